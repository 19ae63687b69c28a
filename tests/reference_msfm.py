"""A straightforward, per-image MSFM reference for testing the batched engine.

It does what the published code does, one image at a time and in plain loops: explicit
window loops with NumPy means, scikit-image connected components, a NumPy greedy NMS,
and ``grid_sample`` crops built from the sampling formula. Slow and obvious on purpose.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from skimage.measure import label as sk_label

from engine.model.msfm import MSFM
from engine.preprocess import resize_direct
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


@torch.inference_mode()
def reference_predict(model: MSFM, image: LoadedImage) -> dict:
    cfg = model.config
    s, g = cfg.input_size, cfg.grid_size
    k_abn = cfg.abnormal_index
    x = torch.from_numpy(resize_direct(image.pixels, s))[None, None]
    if model.fma is not None:
        feats = model.fma.net.features(x)[0].numpy()
        att = F.interpolate(torch.from_numpy(feats.sum(0))[None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0].numpy()
        factor = np.where(att >= cfg.fma.theta * att.max(), cfg.fma.r, 1.0).astype(np.float32)
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
    crop = crop_grid_sample(x, obox, s, s)
    f_o, logits_o = bb(crop)
    a_o = f_o[0].double().sum(0).numpy()

    chosen_boxes, chosen_scores, chosen_scale = [], [], []
    for si, group in enumerate(cfg.window_scales):
        boxes, scores = [], []
        for h, w in group:
            for y in range(g - h + 1):
                for xx in range(g - w + 1):
                    boxes.append((xx, y, xx + w, y + h))
                    scores.append(a_o[y : y + h, xx : xx + w].mean())
        boxes_np, scores_np = np.array(boxes, float), np.array(scores)
        keep = np_nms(boxes_np, scores_np, cfg.nms_iou)
        kk = cfg.windows_per_scale[si]
        keep = (keep + [keep[-1]] * kk)[:kk] if len(keep) < kk else keep[:kk]
        for idx in keep:
            chosen_boxes.append(boxes_np[idx] * s / g)
            chosen_scores.append(scores_np[idx])
            chosen_scale.append(si + 1)
    parts = torch.cat([crop_grid_sample(crop, b, cfg.part_size, cfg.part_size) for b in chosen_boxes])
    _, logits_p = bb(parts)

    def p_abn(lg):
        return float(torch.softmax(lg.double(), -1)[..., k_abn].mean())

    stages = {"main": p_abn(logits[0]), "object": p_abn(logits_o[0]), "parts": p_abn(logits_p)}
    wts = np.array(cfg.ensemble_weights, float)
    prob = float(np.dot(wts / wts.sum(), [stages["main"], stages["object"], stages["parts"]]))

    sx, sy = image.width / s, image.height / s
    def to_orig(b):
        return np.array([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
    ow, oh = obox[2] - obox[0], obox[3] - obox[1]
    windows = []
    for b, sc, scl in zip(chosen_boxes, chosen_scores, chosen_scale):
        inp = np.array([obox[0] + b[0] * ow / s, obox[1] + b[1] * oh / s, obox[0] + b[2] * ow / s, obox[1] + b[3] * oh / s])
        windows.append((to_orig(inp), sc, scl))
    ranked = sorted(windows, key=lambda t: -t[1])
    wgt = np.array([cfg.gamma**i for i in range(1, len(ranked) + 1)])
    wgt /= wgt.sum()
    fused = sum(wi * w[0] for wi, w in zip(wgt, ranked))
    return {
        "probability": prob, "stages": stages, "object_box": to_orig(obox), "windows": ranked,
        "fused_box": fused, "a": a, "cfm": cfm, "fw": fw, "a_object": a_o,
    }
