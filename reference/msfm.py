"""A straightforward, per-image MSFM reference for testing the batched engine.

It does what the published code does, one image at a time and in plain loops: explicit
window loops with NumPy means, scikit-image connected components, a NumPy greedy NMS,
and ``grid_sample`` crops built from the sampling formula. Slow and obvious on purpose.
The evidence map E (SPEC §3b) is built by ``np.interp`` read-outs pasted with masks and
``np.maximum``, and its lesion region labelled by scikit-image, where the engine uses
interpolation matrices in torch and OpenCV.

It follows the inference options of SPEC §3b (issue 17.4), written from their definitions:
``object_size`` (a C x C look-closer crop with its own C/32 grid, the configured windows
scaled to it), ``output_stride`` 16 (the object and part stages run a separately built timm
encoder with ``output_stride=16`` loaded with the same weights, so their grids are C/16 and
part_size/16; ``part_output_stride``, when set, is the parts stage's alone), ``lesion_windows`` (an extra scale of 1x1, 2x2, 1x2, 2x1 cells, left out of the
parts probability and the fused box), ``window_score`` and the FMA ``mode``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label as sk_label

from engine.model.msfm import MSFM
from engine.model.preprocess import resize_direct
from engine.types import LoadedImage


def np_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def np_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if np_iou(boxes[i], boxes[j]) <= thr]
    return keep


def crop_grid_sample(img: torch.Tensor, box, out_h: int, out_w: int) -> torch.Tensor:
    """img (1, C, H, W); sample x = x0 + (j + .5) * bw - .5 bilinearly, clamped to the image."""
    _, _, h, w = img.shape
    x0, y0, x1, y1 = [float(v) for v in box]
    xs = x0 + (torch.arange(out_w, dtype=torch.float64) + 0.5) * (x1 - x0) / out_w - 0.5
    ys = y0 + (torch.arange(out_h, dtype=torch.float64) + 0.5) * (y1 - y0) / out_h - 0.5
    xs, ys = xs.clamp(0, w - 1), ys.clamp(0, h - 1)
    gx = (xs / (w - 1) * 2 - 1) if w > 1 else torch.zeros_like(xs)
    gy = (ys / (h - 1) * 2 - 1) if h > 1 else torch.zeros_like(ys)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].to(img.dtype)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _fine_stage(bb, output_stride: int):
    """The object/part-stage forward: the backbone itself at stride 32; at 16, a timm
    encoder built with ``output_stride=16`` holding a copy of the backbone's weights."""
    if output_stride == 32:
        return bb
    import timm

    enc = timm.create_model(bb.name, pretrained=False, num_classes=0, global_pool="", output_stride=output_stride)
    enc.load_state_dict(bb.encoder.state_dict())
    enc.eval()

    def run(x01):
        f = enc.forward_features((x01.expand(-1, 3, -1, -1) - bb.mean) / bb.std)
        return f, bb.fc(f.mean(dim=(2, 3)))

    return run


@torch.inference_mode()
def reference_predict(model: MSFM, image: LoadedImage) -> dict:
    cfg = model.config
    s, g = cfg.input_size, cfg.grid_size
    cs = cfg.object_size or s  # look-closer crop side
    go = cs // cfg.output_stride  # its grid
    k_abn = cfg.abnormal_index
    x = torch.from_numpy(resize_direct(image.pixels, s))[None, None]
    if cfg.fma.enabled and cfg.fma.mode != "off":
        feats = model.fma.net.features(x)[0].numpy()
        att = F.interpolate(torch.from_numpy(feats.sum(0))[None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0].numpy()
        dark = att >= cfg.fma.theta * att.max()
        if cfg.fma.mode == "saturation":
            img = x[0, 0].numpy()
            dark &= img >= img.max() - cfg.fma.saturation_levels / 255.0
        factor = np.where(dark, cfg.fma.r, 1.0).astype(np.float32)
        x = x * torch.from_numpy(factor)[None, None]

    bb = model.backbone
    f, logits = bb(x)
    f = f[0].double().numpy()
    wfc = bb.fc.weight.double().numpy()
    n = f.shape[0]
    a = np.zeros((g, g))
    cfm = np.zeros((wfc.shape[0], g, g))
    for i in range(g):
        for j in range(g):
            a[i, j] = f[:, i, j].sum()
            for k in range(wfc.shape[0]):
                cfm[k, i, j] = sum(wfc[k, c] * f[c, i, j] for c in range(n))
    fw = np.sqrt((cfm**2).sum(0))
    mask_a = a >= a.mean()
    mask_f = fw >= fw.mean()
    lab = sk_label(mask_a, connectivity=2)
    if lab.max() > 0:
        areas = np.bincount(lab.ravel())
        areas[0] = 0
        comp = lab == int(np.argmax(areas))
    else:
        comp = np.zeros_like(mask_a)
    inter = comp & mask_f
    if inter.any():
        rows, cols = np.where(inter)
        gbox = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    else:
        gbox = (0, 0, g, g)
    obox = np.array(gbox, float) * s / g
    crop = crop_grid_sample(x, obox, cs, cs)
    fine = _fine_stage(bb, cfg.output_stride)
    f_o, logits_o = fine(crop)
    a_o = f_o[0].double().sum(0).numpy()
    k_norm = 1 - k_abn
    wdiff = wfc[k_abn] - wfc[k_norm]
    m_obj = np.tensordot(wdiff, f_o[0].double().numpy(), axes=1)

    def unit(m):
        return (m - m.min()) / max(m.max() - m.min(), 1e-12)

    rank_maps = {"a_o": a_o, "class": m_obj, "product": unit(a_o) * unit(m_obj)}
    rank_map = rank_maps[cfg.window_score]
    # The configured windows are given on the main grid g; on a larger crop each side is
    # scaled by go / g, rounded half up, clamped to the grid, duplicates dropped.
    scales = []
    for group in cfg.window_scales:
        sizes = []
        for h, w in group:
            hw = (min(go, max(1, int(h * go / g + 0.5))), min(go, max(1, int(w * go / g + 0.5))))
            if hw not in sizes:
                sizes.append(hw)
        scales.append(sizes)
    per_scale = list(cfg.windows_per_scale)
    if cfg.lesion_windows:
        scales.append([(1, 1), (2, 2), (1, 2), (2, 1)])
        per_scale.append(cfg.lesion_windows_kept)
    n_paper = sum(cfg.windows_per_scale)

    chosen_boxes, chosen_scores, chosen_scale = [], [], []
    for si, group in enumerate(scales):
        lesion_scale = cfg.lesion_windows and si == len(scales) - 1
        rmap = rank_maps[cfg.lesion_window_score or cfg.window_score] if lesion_scale else rank_map
        boxes, scores = [], []
        for h, w in group:
            for y in range(go - h + 1):
                for xx in range(go - w + 1):
                    boxes.append((xx, y, xx + w, y + h))
                    scores.append(rmap[y : y + h, xx : xx + w].mean())
        boxes_np, scores_np = np.array(boxes, float), np.array(scores)
        keep = np_nms(boxes_np, scores_np, cfg.nms_iou)
        kk = per_scale[si]
        keep = (keep + [keep[-1]] * kk)[:kk] if len(keep) < kk else keep[:kk]
        for idx in keep:
            chosen_boxes.append(boxes_np[idx] * cs / go)
            chosen_scores.append(scores_np[idx])
            chosen_scale.append(si + 1)
    parts = torch.cat([crop_grid_sample(crop, b, cfg.part_size, cfg.part_size) for b in chosen_boxes])
    f_p, logits_p = (fine if cfg.parts_stride == cfg.output_stride else _fine_stage(bb, cfg.parts_stride))(parts)

    def p_abn(lg):
        return float(torch.softmax(lg.double(), -1)[..., k_abn].mean())

    # Lesion-sized windows feed E only: the parts probability reads the configured ones.
    stages = {"main": p_abn(logits[0]), "object": p_abn(logits_o[0]), "parts": p_abn(logits_p[:n_paper])}
    wts = np.array(cfg.ensemble_weights, float)
    prob = float(np.dot(wts / wts.sum(), [stages["main"], stages["object"], stages["parts"]]))

    sx, sy = image.width / s, image.height / s
    def to_orig(b):
        return np.array([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
    ow, oh = obox[2] - obox[0], obox[3] - obox[1]
    windows = []
    for b, sc, scl in zip(chosen_boxes, chosen_scores, chosen_scale):
        inp = np.array([obox[0] + b[0] * ow / cs, obox[1] + b[1] * oh / cs, obox[0] + b[2] * ow / cs, obox[1] + b[3] * oh / cs])
        windows.append((to_orig(inp), sc, scl))
    # Evidence map E (SPEC §3b) from this reference's own features: class maps
    # (W_abn - W_norm) . F, each read on E's grid of cell centres and pasted by masks.
    m_main = cfm[k_abn] - cfm[k_norm]
    m_parts = [np.tensordot(wdiff, fp.double().numpy(), axes=1) for fp in f_p]
    evidence = reference_evidence(m_main, (m_obj, to_orig(obox)), [(m, w[0]) for m, w in zip(m_parts, windows)], image.width, image.height)
    peak, lesion = reference_peak_box(evidence, image.width, image.height, cfg.lesion_tau)

    ranked = sorted(windows, key=lambda t: -t[1])
    paper_ranked = sorted(windows[:n_paper], key=lambda t: -t[1])  # eq. 11 over the configured windows
    wgt = np.array([cfg.gamma**i for i in range(1, len(paper_ranked) + 1)])
    wgt /= wgt.sum()
    fused = sum(wi * w[0] for wi, w in zip(wgt, paper_ranked))
    return {
        "probability": prob, "stages": stages, "object_box": to_orig(obox), "windows": ranked,
        "fused_box": fused, "a": a, "cfm": cfm, "fw": fw, "a_object": a_o,
        "evidence": evidence, "peak": peak, "lesion_box": lesion, "m_main": m_main, "m_object": m_obj, "m_parts": np.stack(m_parts),
    }


def upsample_at(m: np.ndarray, box, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear (align_corners=False, edges repeated) value of map ``m`` stretched over
    ``box`` (xyxy source pixels) at source points xs (columns) x ys (rows), with
    ``np.interp`` along one axis and then the other."""
    h, w = m.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    u = (xs - x0) / (x1 - x0) * w - 0.5  # np.interp clamps outside [0, w-1] to the edge values
    v = (ys - y0) / (y1 - y0) * h - 0.5
    rows = np.stack([np.interp(u, np.arange(w), m[r]) for r in range(h)])  # (h, We)
    return np.stack([np.interp(v, np.arange(h), rows[:, c]) for c in range(len(xs))], axis=1)  # (He, We)


def reference_evidence(m_main: np.ndarray, obj: tuple, parts: list, width: int, height: int) -> np.ndarray:
    """E on the ceil(H/4) x ceil(W/4) grid: main map everywhere, the object map pasted over
    the object box, and where any part covers a cell centre the maximum of those parts."""
    he, we = -(-height // 4), -(-width // 4)
    xs = (np.arange(we) + 0.5) * width / we
    ys = (np.arange(he) + 0.5) * height / he

    def covers(box):
        return ((ys >= box[1]) & (ys < box[3]))[:, None] & ((xs >= box[0]) & (xs < box[2]))[None, :]

    e = upsample_at(m_main, (0, 0, width, height), xs, ys)
    m_obj, obox = obj
    e = np.where(covers(obox), upsample_at(m_obj, obox, xs, ys), e)
    best = np.full((he, we), -np.inf)
    for m, box in parts:
        best = np.where(covers(box), np.maximum(best, upsample_at(m, box, xs, ys)), best)
    return np.where(np.isfinite(best), best, e)


def reference_peak_box(e: np.ndarray, width: int, height: int, tau: float):
    """Peak (x, y) and lesion box (xyxy) in source pixels, with scikit-image labels."""
    he, we = e.shape
    i, j = np.unravel_index(np.argmax(e), e.shape)
    top = e[i, j]
    thr = tau * top if top > 0 else e.min() + tau * (top - e.min())
    lab = sk_label(e >= thr, connectivity=2)
    rows, cols = np.where(lab == lab[i, j])
    cw, ch = width / we, height / he
    return ((j + 0.5) * cw, (i + 0.5) * ch), (cols.min() * cw, rows.min() * ch, (cols.max() + 1) * cw, (rows.max() + 1) * ch)
