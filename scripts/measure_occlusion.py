"""Does the model look at the fracture? Occlusion of validation radiographs.

    .venv/bin/python scripts/measure_occlusion.py resources/models/default.pt \\
        --labels ../shared/data/xray/labels.csv --split val [--plain runs/default/plain/best.pt] \\
        [--json OUT.json] [--limit N]

Every fractured image of the split with boxes (``boxes.csv``) is read into the network
input (the S x S direct resize the engine feeds the model, :func:`engine.model.preprocess.make_batch`)
and scored by the model as a black box: the score is the log-odds of the abnormal class of
the probability the threshold is set on (MSFM: the stages' weighted mean,
:func:`engine.infer.stage_probabilities`; a plain classifier: its softmax). Occluding
means replacing the pixels of a region (``--fill``) by those of a Gaussian blur of the same
input (σ ``--sigma`` input pixels: a fracture line of a few pixels is gone, the bone's
brightness and outline stay, so the image stays a radiograph) or by inpainting from the
region's surroundings (OpenCV's fast marching, Telea 2004). Neither is neutral — a blurred
band across a bone can itself look like a break — so the control placements below get
the same fill, and the two fills can be compared.

1. **Box occlusion** (is the decision made on the fracture?). The union of the image's true
   boxes, each grown by ``--margin`` of its size (at least 4 input pixels a side), is
   occluded; as a control the same boxes are moved together by a random offset to up to
   ``--controls`` places inside the image that do not touch the grown true boxes and are at
   least 0.8 times as bright on average (bone and limb, not the background), and occluded
   there. Per image: the score's drop for the true boxes and the mean drop for the controls
   (same area, same fill). Printed: the median drops, how often the true boxes' drop exceeds
   the controls', and how often a finding at the file's threshold is lost by each.
2. **Occlusion sensitivity** (where is the decision made?). A ``--patch`` x ``--patch``
   square (input pixels; 0 skips the maps) slides over the input at ``--stride``; each position is occluded
   alone and its score drop added to every pixel it covers; the mean drop per pixel is a
   map over the input (Zeiler & Fergus, ECCV 2014), resized to the evidence grid of
   :mod:`engine.evidence` and read like E: its peak (pointing, within 15 px) and the lesion
   box (the 8-connected region above τ of the peak; τ chosen on these images by
   ``scripts/tune_lesion_tau.py``'s rule). Also read: MSFM's own E of the same images, and
   their product (both min-max scaled to [0, 1]).

3. **Candidate peaks** (would a second look pick the fracture among E's peaks?). The
   ``--candidates`` highest local maxima of MSFM's E (each suppressing a disc of 5 % of the
   image's longer side) are re-ranked by two scores the model can give each of them: the
   score drop when a ``P`` x ``P`` square (``--rerank-patches``) centred on it is occluded, and
   the abnormal-minus-normal logit of the shared backbone on a ``V`` x ``V`` window
   (``--rerank-windows``) of the input centred on it, resized to the part size and read at
   the parts stage's stride (what the parts stage would say of a window placed there).
   Printed: pointing of the top peak, of the best of the top k (an oracle: the most any
   re-ranking of them can reach) and of the peak each re-ranking chooses.

Boxes are xyxy pixels of the source image throughout the output; the input is a direct
(aspect-changing) resize, so source x = input x * W / S, y = input y * H / S.
Only a validation split may be used: train and test are refused. One forward per occluded
view: ``(controls + 1) + ceil((S - patch) / stride + 1)^2`` per image and model, and one per
candidate and re-ranking setting.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_lesion_tau import DEFAULT_GRID, POINTING_TOLERANCE, REFUSED_SPLITS, image_scores, pick, point_hits, score_maps

from engine.boxes import crop_resize
from engine.data import load_samples
from engine.errors import ImageLoadError
from engine.evaluation.evaluate import _path_key, read_hardware_flags
from engine.evidence import evidence_shape
from engine.infer import Predictor, stage_probabilities
from engine.io import load_image
from engine.model.checkpoint import load_checkpoint
from engine.model.msfm import MSFM
from engine.model.preprocess import make_batch

LOGIT_CLIP = 1e-6


def input_boxes(boxes: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """(N, 4) xyxy source pixels -> (N, 4) xyxy pixels of the S x S direct-resize input."""
    return np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([size / width, size / height] * 2)


def grown(boxes: np.ndarray, margin: float, size: int) -> np.ndarray:
    """``boxes`` (N, 4) xyxy input pixels, each side moved out by ``margin`` of its extent (>= 4 px), clipped to [0, size]."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    dx, dy = np.maximum(margin * w, 4.0), np.maximum(margin * h, 4.0)
    return np.clip(np.stack([boxes[:, 0] - dx, boxes[:, 1] - dy, boxes[:, 2] + dx, boxes[:, 3] + dy], 1), 0, size)


def box_mask(boxes: np.ndarray, size: int) -> np.ndarray:
    """(S, S) bool: pixels whose centre lies in one of ``boxes`` (N, 4) xyxy input pixels."""
    c = np.arange(size) + 0.5
    m = np.zeros((size, size), bool)
    for x0, y0, x1, y1 in boxes:
        m |= ((c[:, None] >= y0) & (c[:, None] < y1)) & ((c[None, :] >= x0) & (c[None, :] < x1))
    return m


def control_masks(x: np.ndarray, boxes: np.ndarray, forbidden: np.ndarray, n: int, rng: np.random.Generator, tries: int = 2000) -> list[np.ndarray]:
    """Up to ``n`` masks of ``boxes`` (grown, input pixels) moved together by one random
    offset: inside the image, not touching ``forbidden`` (S, S) bool (the grown true boxes),
    mean brightness of ``x`` (S, S) under the mask at least 0.8 of that under ``forbidden``
    (bone and limb like the fracture's surroundings, not the background)."""
    size = x.shape[0]
    lo, hi = boxes[:, :2].min(0), boxes[:, 2:].max(0)
    floor = 0.8 * float(x[forbidden].mean())
    out: list[np.ndarray] = []
    for _ in range(tries):
        if len(out) == n:
            break
        d = rng.uniform(-lo, size - hi)  # keeps every box inside [0, S]
        m = box_mask(boxes + np.concatenate([d, d]), size)
        if m.any() and not (m & forbidden).any() and float(x[m].mean()) >= floor:
            out.append(m)
    return out


class Scorer:
    """Log-odds of the abnormal class of a model, for batches of S x S inputs: an MSFM file's
    stages' weighted mean (the probability its threshold is set on), or with ``plain`` the
    backbone + GAP + FC alone, as ``msfm evaluate --baseline`` reads a plain classifier."""

    def __init__(self, model: MSFM, batch_size: int, plain: bool = False) -> None:
        self.model, self.batch_size, self.plain = model, batch_size, plain
        self.cfg = model.config

    @torch.inference_mode()
    def __call__(self, xs: np.ndarray) -> np.ndarray:
        """(B, S, S) float32 inputs in [0, 1] -> (B,) float64 log-odds."""
        k = self.cfg.abnormal_index
        out_p = []
        for i in range(0, len(xs), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(xs[i:i + self.batch_size, None]))
            if self.plain:
                p = self.model.backbone(x)[1].float().softmax(-1)[:, k]
            else:
                p = stage_probabilities(self.model(x), self.cfg)[4]
            out_p.append(p.double().numpy())
        p = np.clip(np.concatenate(out_p), LOGIT_CLIP, 1 - LOGIT_CLIP)
        return np.log(p / (1 - p))


Fill = Callable[[np.ndarray], np.ndarray]


def make_fill(x: np.ndarray, kind: str, sigma: float) -> Fill:
    """``fill(mask)``: the input ``x`` (S, S) with the pixels of ``mask`` (S, S) bool replaced:
    by those of a Gaussian blur of ``x`` (``"blur"``, σ input pixels) or by fast-marching
    inpainting from the mask's surroundings (``"inpaint"``, Telea 2004, radius 3 px)."""
    if kind == "blur":
        xb = cv2.GaussianBlur(x, (0, 0), sigma)
        return lambda m: np.where(m, xb, x)
    return lambda m: cv2.inpaint(x, m.astype(np.uint8), 3, cv2.INPAINT_TELEA)


def rect_mask(size: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(S, S) bool: rows y0:y1, columns x0:x1 (integer input pixels, clipped by slicing)."""
    m = np.zeros((size, size), bool)
    m[max(0, y0):y1, max(0, x0):x1] = True
    return m


def sensitivity_map(score: Scorer, fill: Fill, size: int, base: float, patch: int, stride: int) -> np.ndarray:
    """(S, S) mean score drop of the patches covering each input pixel (see the module doc)."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    pos = [(y, x0) for y in starts for x0 in starts]
    views = np.stack([fill(rect_mask(size, x0, y, x0 + patch, y + patch)) for y, x0 in pos]).astype(np.float32)
    drops = base - score(views)
    acc, cnt = np.zeros((size, size)), np.zeros((size, size))
    for d, (y, x0) in zip(drops, pos):
        acc[y:y + patch, x0:x0 + patch] += d
        cnt[y:y + patch, x0:x0 + patch] += 1
    return acc / np.maximum(cnt, 1)


def to_evidence_grid(m: np.ndarray, width: int, height: int) -> np.ndarray:
    """(S, S) map over the direct-resize input -> (He, We) float32 on the evidence grid of the source."""
    he, we = evidence_shape(width, height)
    return cv2.resize(m.astype(np.float32), (we, he), interpolation=cv2.INTER_LINEAR)


def unit(m: np.ndarray) -> np.ndarray:
    """``m`` min-max scaled to [0, 1] (a constant map gives zeros)."""
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def candidate_peaks(e: np.ndarray, width: int, height: int, k: int, radius_share: float = 0.05) -> list[tuple[float, float]]:
    """The ``k`` highest local maxima of ``e`` (He, We), each found after suppressing a disc
    of ``radius_share`` of the grid's longer side around the earlier ones; (x, y) source
    pixels of their cell centres, highest first (the first is E's peak)."""
    e = np.where(np.isfinite(e), e, -np.inf).astype(np.float64)
    he, we = e.shape
    yy, xx = np.ogrid[:he, :we]
    rad2 = (radius_share * max(he, we)) ** 2
    out = []
    for _ in range(k):
        i, j = np.unravel_index(int(np.argmax(e)), e.shape)
        if not np.isfinite(e[i, j]):
            break
        out.append(((j + 0.5) * width / we, (i + 0.5) * height / he))
        e[(yy - i) ** 2 + (xx - j) ** 2 <= rad2] = -np.inf
    return out


def centred_boxes(points: np.ndarray, side: float) -> np.ndarray:
    """(N, 4) xyxy squares of ``side`` centred on ``points`` (N, 2), same pixels."""
    return np.concatenate([points - side / 2, points + side / 2], 1)


def occlusion_drops(score: Scorer, fill: Fill, size: int, base: float, points: np.ndarray, patch: int) -> np.ndarray:
    """(N,) score drop when the ``patch`` square centred on each of ``points`` (N, 2) input pixels is occluded."""
    boxes = np.rint(centred_boxes(points, patch)).astype(int).clip(0, size)
    return base - score(np.stack([fill(rect_mask(size, *b)) for b in boxes]).astype(np.float32))


@torch.inference_mode()
def window_logits(model: MSFM, x: np.ndarray, points: np.ndarray, side: float) -> np.ndarray:
    """(N,) abnormal-minus-normal logit of the shared backbone on the ``side`` square of the
    input ``x`` (S, S) centred on each of ``points`` (N, 2) input pixels, resized to the part
    size and read at the parts stage's stride (edge pixels repeat outside the input)."""
    cfg = model.config
    boxes = torch.from_numpy(centred_boxes(points, side)).float()
    crops = crop_resize(torch.from_numpy(np.ascontiguousarray(x))[None, None], boxes, torch.zeros(len(points), dtype=torch.long), cfg.part_size)
    _, logits = model.backbone(crops, cfg.parts_stride)
    k = cfg.abnormal_index
    return (logits[:, k] - logits[:, 1 - k]).double().numpy()


def read_maps(name: str, maps: list[np.ndarray], sizes: list[tuple[int, int]], gts: list[np.ndarray], tau: float | None) -> dict:
    """One reading's localisation figures: at ``tau`` when given, else at the τ the rule picks on these images."""
    if tau is None:
        tau = pick([score_maps(maps, sizes, gts, float(t)) for t in DEFAULT_GRID])["tau"]
    r = score_maps(maps, sizes, gts, tau)
    r["reading"] = name
    return r


def box_row(rows: list[dict], name: str, rng: np.random.Generator) -> dict:
    """Box occlusion figures of model ``name`` over ``rows`` (images with control placements)."""
    with_c = [r for r in rows if r[name]["control_drop"] is not None]
    if not with_c:
        return {"n": 0}
    td = np.array([r[name]["true_drop"] for r in with_c])
    cd = np.array([r[name]["control_drop"] for r in with_c])
    diff = td - cd
    boot = np.median(diff[rng.integers(0, len(diff), (1000, len(diff)))], axis=1)
    found = [r for r in with_c if r[name]["found"]]
    return {"n": len(with_c), "found": len(found), "median_true_drop": float(np.median(td)), "median_control_drop": float(np.median(cd)),
            "median_difference": float(np.median(diff)), "median_difference_ci": np.percentile(boot, [2.5, 97.5]).tolist(),
            "wilcoxon_p": float(wilcoxon(td, cd).pvalue) if len(diff) > 1 and np.any(diff != 0) else float("nan"),
            "true_beats_control": float(np.mean(td > cd)),
            "lost_true": float(np.mean([r[name]["lost_true"] for r in found])) if found else float("nan"),
            "lost_control": float(np.mean([r[name]["lost_control"] for r in found])) if found else float("nan"),
            "mask_share": float(np.median([r["mask_share"] for r in with_c]))}


def candidate_table(rows: list[dict], k_max: int) -> dict[str, list[tuple[float, float]]]:
    """Strict / within-15-px pointing of the candidate chosen by each reading, for k = 1..k_max."""
    cand = [r["candidates"] for r in rows]

    def rate(picks: list[int], key: str) -> float:
        return float(np.mean([c[key][i] for c, i in zip(cand, picks)]))

    def chosen(score: str | None, setting: str | None, k: int) -> tuple[float, float]:
        picks = [0 if score is None else int(np.argmax(c[score][setting][:k])) for c in cand]
        return rate(picks, "hit"), rate(picks, "hit15")

    ks = range(1, k_max + 1)
    table = {"E's peak (as shipped)": [chosen(None, None, 1)] * k_max,
             "oracle: best of the top k": [(float(np.mean([any(c["hit"][:k]) for c in cand])), float(np.mean([any(c["hit15"][:k]) for c in cand])))
                                           for k in ks]}
    for pt in cand[0]["occlusion"]:
        table[f"re-ranked by occlusion drop, {pt} px"] = [chosen("occlusion", pt, k) for k in ks]
    for v in cand[0]["window"]:
        table[f"re-ranked by the window logit, {v} px"] = [chosen("window", v, k) for k in ks]
    return table


def report(record: dict, hardware: dict[str, bool] | None) -> str:
    """The markdown tables of a run (see the module doc): box occlusion and candidate peaks on
    all images and without metal-hardware images, and the sensitivity maps' localisation."""
    rows, summ = record["images"], record["summary"]
    models = [n for n in ("msfm", "plain") if n in rows[0]]
    a = summ["args"]
    fill_words = f"Gaussian blur σ {float(a['sigma']):g} px" if a.get("fill", "blur") == "blur" else "inpainting (Telea)"
    subsets = {"all": rows}
    if hardware is not None:
        subsets["no hardware"] = [r for r in rows if hardware.get(_path_key(r["path"])) is False]
    out = [f"{len(rows)} fractured {a['split']} images with boxes ({a['labels']}); {a['checkpoint']}; fill: {fill_words} of the network input; "
           f"true boxes grown {a['margin']} a side; {summ['s_per_image']:.1f} s per image"
           + ("" if hardware is not None else "; no hardware flags beside the labels")]
    out += ["", "| model | images | found at its threshold | median drop, true boxes | median drop, controls | true minus controls: median [95 % CI] | "
            "true drop > controls' | Wilcoxon p | finding lost: true boxes | controls | grown boxes' share of the image |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(int(a.get("seed", 0)))
    summ["box_occlusion"] = {}
    for sub, rs in subsets.items():
        for name in models:
            b = box_row(rs, name, rng)
            summ["box_occlusion"][f"{name}, {sub}"] = b
            if b["n"]:
                lo, hi = b["median_difference_ci"]
                out.append(f"| {name} | {sub} ({b['n']}) | {b['found']} | {b['median_true_drop']:.3f} | {b['median_control_drop']:.3f} | "
                           f"{b['median_difference']:.3f} [{lo:.3f}, {hi:.3f}] | {b['true_beats_control']:.3f} | {b['wilcoxon_p']:.3g} | "
                           f"{b['lost_true']:.3f} | {b['lost_control']:.3f} | {b['mask_share']:.4f} |")
    maps_words = f"sensitivity maps: patch {a['patch']}, stride {a['stride']} input px; τ by the rule" if int(a["patch"]) else "no sensitivity maps (--patch 0)"
    out += ["", f"localisation on the same images ({maps_words}):",
            "| reading | τ | pointing | ≤ 15 px | lesion IoU ≥ 0.1 | ≥ 0.3 | no hardware: pointing / ≤ 15 px |", "|---|---|---|---|---|---|---|"]
    for r in summ["readings"]:
        key = "e" if r["reading"].startswith("E (") else None
        name = r["reading"].split(", ")[-1] if r["reading"].startswith("occlusion, ") else None
        nh = subsets.get("no hardware")
        if nh and (key or name):
            hit = [x["e_hit"] if key else x[name]["occlusion_hit"] for x in nh]
            hit15 = [x["e_hit15"] if key else x[name]["occlusion_hit15"] for x in nh]
            extra = f"{np.mean(hit):.3f} / {np.mean(hit15):.3f}"
        else:
            extra = "–"
        out.append(f"| {r['reading']} | {r['tau']:.2f} | {r['pointing']:.3f} | {r['pointing15']:.3f} | {r['iou10']:.3f} | {r['iou30']:.3f} | {extra} |")
    k_max = int(a["candidates"])
    summ["candidates"] = {}
    for sub, rs in subsets.items():
        table = candidate_table(rs, k_max)
        summ["candidates"][sub] = table
        out += ["", f"E's {k_max} highest local maxima re-ranked, {sub} ({len(rs)} images; strict pointing / within 15 px of the peak chosen):",
                "| reading | " + " | ".join(f"top {k}" for k in range(1, k_max + 1)) + " |", "|---|" + "---|" * k_max]
        out += [f"| {name} | " + " | ".join(f"{x:.3f} / {y:.3f}" for x, y in vals) + " |" for name, vals in table.items()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path, help="an MSFM checkpoint (its E is read beside the occlusion maps)")
    ap.add_argument("--plain", type=Path, help="also occlude for this plain-classifier checkpoint (recipe default-plain)")
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv with a split column and boxes.csv beside it")
    ap.add_argument("--split", default="val", help="validation split (train and test are refused)")
    ap.add_argument("--fill", choices=("blur", "inpaint"), default="blur", help="what replaces occluded pixels (default blur)")
    ap.add_argument("--sigma", type=float, default=8.0, help="blur of the fill, input pixels (default 8)")
    ap.add_argument("--margin", type=float, default=0.25, help="growth of each true box per side, share of its size (default 0.25)")
    ap.add_argument("--controls", type=int, default=8, help="control placements per image (default 8)")
    ap.add_argument("--patch", type=int, default=48, help="occlusion square of the sensitivity maps, input pixels (default 48; 0: no maps)")
    ap.add_argument("--stride", type=int, default=32, help="its step, input pixels (default 32)")
    ap.add_argument("--candidates", type=int, default=5, help="E's local maxima re-ranked (default 5)")
    ap.add_argument("--rerank-patches", type=int, nargs="+", default=[16, 32, 48], help="occlusion squares for re-ranking, input pixels")
    ap.add_argument("--rerank-windows", type=int, nargs="+", default=[48, 80, 128], help="window sides for re-ranking, input pixels")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, help="only the first N fractured images with boxes (a quick look)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write every image's figures as JSON here (and the maps beside it, .maps.npz)")
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier run's --json again (no model is run)")
    args = ap.parse_args(argv)
    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: validation data only (never {' or '.join(REFUSED_SPLITS)})")
    hardware, _ = read_hardware_flags(args.labels)
    if args.from_json:
        print(report(json.loads(args.from_json.read_text()), hardware))
        return 0
    predictor = Predictor.from_checkpoint(args.checkpoint, "cpu", args.batch_size, enforce_scope=False)  # the split was chosen by hand
    cfg = predictor.config
    if cfg.crop_from != "input":  # occluding the input would leave the crops cut from the source untouched
        ap.error(f"{args.checkpoint}: its look-closer crop is cut from the {cfg.crop_from}, not the network input this script occludes")
    msfm_score = Scorer(predictor.model, args.batch_size)
    models = {"msfm": (msfm_score, cfg.threshold)}
    if args.plain:
        plain = load_checkpoint(args.plain, "cpu")
        if plain.config.input_size != cfg.input_size:
            ap.error(f"--plain {args.plain}: input size {plain.config.input_size}, the MSFM file's is {cfg.input_size}")
        models["plain"] = (Scorer(plain.model, args.batch_size, plain=True), plain.config.threshold)
    size = cfg.input_size
    samples = [s for s in load_samples(args.labels).split(args.split) if s.label == 1 and s.boxes]
    if args.limit:
        samples = samples[:args.limit]
    if not samples:
        raise SystemExit(f"{args.labels}: no fractured image with boxes in split {args.split!r}")

    rng = np.random.default_rng(args.seed)
    rows: list[dict] = []
    e_maps: list[np.ndarray] = []
    occ: dict[str, list[np.ndarray]] = {name: [] for name in models}
    sizes: list[tuple[int, int]] = []
    gts: list[np.ndarray] = []
    t0 = time.perf_counter()
    for n, s in enumerate(samples, 1):
        try:
            image = load_image(s.path)
        except ImageLoadError as exc:
            print(f"skipped {s.path}: {exc.reason}", file=sys.stderr)
            continue
        w, h = image.width, image.height
        x = make_batch([image], size)[0, 0].numpy()
        fill = make_fill(x, args.fill, args.sigma)
        g_src = np.asarray(s.boxes, np.float64).reshape(-1, 4)
        g_in = grown(input_boxes(g_src, w, h, size), args.margin, size)
        true_m = box_mask(g_in, size)
        ctrl = control_masks(x, g_in, true_m, args.controls, rng)
        row = {"path": str(s.path), "width": w, "height": h, "mask_share": float(true_m.mean()), "n_controls": len(ctrl)}
        views = np.stack([x] + [fill(m) for m in [true_m] + ctrl]).astype(np.float32)
        for name, (score, thr) in models.items():
            z = score(views)
            lt = math.log(thr / (1 - thr))
            row[name] = {"base": float(z[0]), "true_drop": float(z[0] - z[1]),
                         "control_drop": float(np.mean(z[0] - z[2:])) if ctrl else None,
                         "found": bool(z[0] >= lt), "lost_true": bool(z[1] < lt <= z[0]),
                         "lost_control": float(np.mean((z[2:] < lt) & (z[0] >= lt))) if ctrl else None}
            if args.patch:
                occ[name].append(to_evidence_grid(sensitivity_map(score, fill, size, float(z[0]), args.patch, args.stride), w, h))
        e = predictor.predict_batch([image])[0].maps.evidence
        e_maps.append(e)
        cands = np.array(candidate_peaks(e, w, h, args.candidates), np.float64).reshape(-1, 2)
        c_in = cands * np.array([size / w, size / h])
        row["candidates"] = {"points": cands.tolist(), "hit": [point_hits(tuple(c), g_src) for c in cands],
                             "hit15": [point_hits(tuple(c), g_src, POINTING_TOLERANCE) for c in cands],
                             "occlusion": {str(pt): occlusion_drops(msfm_score, fill, size, row["msfm"]["base"], c_in, pt).tolist() for pt in args.rerank_patches},
                             "window": {str(v): window_logits(predictor.model, x, c_in, v).tolist() for v in args.rerank_windows}}
        sizes.append((w, h))
        gts.append(g_src)
        rows.append(row)
        print(f"\r{n}/{len(samples)} ({(time.perf_counter() - t0) / n:.1f} s per image)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if not rows:
        raise SystemExit("no readable image")
    per_image = (time.perf_counter() - t0) / len(rows)
    _, strict, near = image_scores(e_maps, sizes, gts, cfg.lesion_tau)
    for r, a, b in zip(rows, strict, near):
        r["e_hit"], r["e_hit15"] = bool(a), bool(b)
    readings = [read_maps("E (stored τ)", e_maps, sizes, gts, cfg.lesion_tau)]
    for name in models if args.patch else ():
        readings.append(read_maps(f"occlusion, {name}", occ[name], sizes, gts, None))
        readings.append(read_maps(f"E x occlusion, {name}", [unit(e) * unit(o) for e, o in zip(e_maps, occ[name])], sizes, gts, None))
        _, strict, near = image_scores(occ[name], sizes, gts, readings[-2]["tau"])  # per image, for subsets and by-eye work
        for r, a, b in zip(rows, strict, near):
            r[name]["occlusion_hit"], r[name]["occlusion_hit15"] = bool(a), bool(b)
    record = {"summary": {"n": len(rows), "s_per_image": per_image, "readings": readings,
                          "args": {k: str(v) for k, v in vars(args).items()}}, "images": rows}
    print(report(record, hardware))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        np.savez_compressed(args.json.with_suffix(".maps.npz"), **{f"{name}_{i}": m for name in occ for i, m in enumerate(occ[name])},
                            **{f"e_{i}": m for i, m in enumerate(e_maps)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
