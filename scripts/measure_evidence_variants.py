"""Measure other ways of composing the evidence map E from the same view maps, on validation boxes.

    .venv/bin/python scripts/measure_evidence_variants.py resources/models/default.pt \\
        --labels ../shared/data/xray/labels.csv [--split val] [--json OUT.json]

E (SPEC §3b, :mod:`engine.evidence`) is the maximum over the part windows' class maps, the
object stage's map where no window covers a pixel, the main stage's elsewhere. This reads
the fractured images with ground-truth boxes once through the engine's own predictor,
captures the per-view maps it hands to :func:`engine.evidence.evidence_map` (they are not
part of a :class:`engine.types.Prediction`; capturing them at that one call reads exactly
what the app reads), and scores each composition of :data:`VARIANTS` on the same reads:
strict pointing, pointing within 15 source pixels, and lesion-box IoU ≥ 0.1 / 0.3 at the
checkpoint's τ and at the τ of ``scripts/tune_lesion_tau.py``'s grid and rule. The first
row is E as shipped; it must equal the predictor's own peaks (checked, else exit 1).

``--bright Q [Q ...]`` adds, per Q, the shipped E read only where the radiograph is bright:
cells whose brightness (the source pixels area-averaged onto E's grid, then a Gaussian blur
of σ 1 % of the grid's longer side plus half a cell) ranks at or above the share Q of the
image's cells. Bone is the bright part of a radiograph and a fracture lies in bone; the
other cells get E's minimum, so neither the peak nor the lesion box can land on background
or soft tissue darker than that. Also printed: how bright the true boxes and E's peaks are
(the rank, so computed, of the brightest cell of each true box and of the peak cell).

Only a validation split may be used: train and test are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_lesion_tau import DEFAULT_GRID, REFUSED_SPLITS, pick, score_maps  # noqa: E402

import engine.evidence as evidence  # noqa: E402
from engine.data import load_samples  # noqa: E402
from engine.errors import ImageLoadError  # noqa: E402
from engine.evidence import ViewMaps, compose_evidence, peak_and_box, view_maps  # noqa: E402
from engine.infer import Predictor  # noqa: E402
from engine.io import load_image  # noqa: E402


def _fallback(v: ViewMaps, inside: torch.Tensor) -> torch.Tensor:
    """Where no window covers a cell: ``inside`` (object-box cells), else the main map."""
    return torch.where(v.obj_cov, inside, v.main)


def _part_max(v: ViewMaps) -> torch.Tensor:
    return v.parts.masked_fill(~v.parts_cov, float("-inf")).amax(0)


def _part_mean(v: ViewMaps) -> torch.Tensor:
    return (v.parts * v.parts_cov).sum(0) / v.parts_cov.sum(0).clamp_min(1)


#: name -> E from the view maps, (He, We). Sums add the same number of maps everywhere so
#: no region wins by having more terms.
VARIANTS: dict[str, Callable[[ViewMaps], torch.Tensor]] = {
    "max over parts (shipped)": compose_evidence,
    "mean over parts": lambda v: torch.where(v.parts_cov.any(0), _part_mean(v), _fallback(v, v.obj)),
    "max over parts + object": lambda v: torch.where(v.parts_cov.any(0), _part_max(v) + v.obj, 2 * _fallback(v, v.obj)),
    "mean over parts + object": lambda v: torch.where(v.parts_cov.any(0), _part_mean(v) + v.obj, 2 * _fallback(v, v.obj)),
    "max over parts + object + main": lambda v: torch.where(v.parts_cov.any(0), _part_max(v) + v.obj + v.main,
                                                            torch.where(v.obj_cov, 2 * v.obj + v.main, 3 * v.main)),
    "object map (main outside the crop)": lambda v: _fallback(v, v.obj),
    "object + main": lambda v: torch.where(v.obj_cov, v.obj + v.main, 2 * v.main),
    "main map alone": lambda v: v.main,
}


def brightness_rank(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(He, We) rank in [0, 1) of each evidence cell's smoothed brightness among the image's
    cells (0 darkest), from ``pixels`` (H, W) in [0, 1]; see the module doc."""
    he, we = shape
    small = cv2.resize(pixels.astype(np.float32), (we, he), interpolation=cv2.INTER_AREA)
    smooth = cv2.GaussianBlur(small, (0, 0), 0.01 * max(he, we) + 0.5)
    order = np.argsort(smooth.ravel(), kind="stable")
    rank = np.empty(order.size, np.float64)
    rank[order] = np.arange(order.size) / order.size
    return rank.reshape(he, we)


def box_cells(box: np.ndarray, width: int, height: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the (He, We) grid whose cells a box (xyxy source pixels) touches."""
    he, we = shape
    x0, y0, x1, y1 = box
    r0, c0 = min(int(y0 * he / height), he - 1), min(int(x0 * we / width), we - 1)
    return slice(r0, max(r0 + 1, int(np.ceil(y1 * he / height)))), slice(c0, max(c0 + 1, int(np.ceil(x1 * we / width))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv with a split column and boxes.csv beside it")
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bright", type=float, nargs="*", default=[], metavar="Q",
                    help="also read E only on cells at or above this brightness rank (0-1), one row per Q")
    args = ap.parse_args(argv)
    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: validation data only (never {' or '.join(REFUSED_SPLITS)})")
    samples = [s for s in load_samples(args.labels).split(args.split) if s.label == 1 and s.boxes]
    if not samples:
        ap.error(f"{args.labels}: no fractured images with boxes in split {args.split!r}")

    captured: list[ViewMaps] = []
    shipped = evidence.evidence_map

    def capture(*a: object) -> torch.Tensor:
        captured.append(view_maps(*a))  # type: ignore[arg-type]
        return shipped(*a)  # type: ignore[arg-type]

    predictor = Predictor.from_checkpoint(args.checkpoint, "cpu", enforce_scope=False)
    tau = predictor.model.config.lesion_tau
    sizes, gts, peaks, files, ranks = [], [], [], [], []
    evidence.evidence_map = capture
    try:
        for s in samples:
            try:
                im = load_image(s.path)
            except ImageLoadError as e:
                print(f"skipped {s.path}: {e}", file=sys.stderr)
                continue
            n = len(captured)
            p = predictor.predict_batch([im])[0]
            if len(captured) != n + 1:
                print(f"error: the predictor built {len(captured) - n} evidence maps for one image", file=sys.stderr)
                return 1
            sizes.append((p.width, p.height))
            gts.append(np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4))
            peaks.append(p.peak)
            if args.bright:
                ranks.append(brightness_rank(im.pixels, p.maps.evidence.shape))
            files.append(str(s.path))
    finally:
        evidence.evidence_map = shipped

    def row(name: str, maps: list[np.ndarray]) -> dict:
        best = pick([score_maps(maps, sizes, gts, float(t)) for t in DEFAULT_GRID])
        return {"variant": name, **score_maps(maps, sizes, gts, tau), "best_tau": best["tau"], "best_iou10": best["iou10"], "best_iou30": best["iou30"]}

    rows = []
    for name, compose in VARIANTS.items():
        maps = [compose(v).detach().cpu().numpy().astype(np.float32) for v in captured]
        if not rows:  # the shipped composition must reproduce the predictor's own peaks
            again = [peak_and_box(m, w, h, tau)[0] for m, (w, h) in zip(maps, sizes)]
            if any(not np.allclose(a, b) for a, b in zip(again, peaks)):
                print("error: the shipped composition does not reproduce the predictor's peaks", file=sys.stderr)
                return 1
            shipped_maps = maps
        rows.append(row(name, maps))
    for q in args.bright:
        rows.append(row(f"shipped E on cells of brightness rank >= {q:g}",
                        [np.where(r >= q, m, m.min()).astype(np.float32) for m, r in zip(shipped_maps, ranks)]))

    print(f"{len(files)} fractured {args.split} images with boxes ({args.labels}); {args.checkpoint}, τ {tau}")
    if args.bright:
        box_rank = [max(float(r[box_cells(b, w, h, r.shape)].max()) for b in g) for r, (w, h), g in zip(ranks, sizes, gts)]
        peak_rank = [float(r[min(int(py * r.shape[0] / h), r.shape[0] - 1), min(int(px * r.shape[1] / w), r.shape[1] - 1)])
                     for r, (w, h), (px, py) in zip(ranks, sizes, peaks)]
        q = [0, 5, 10, 25, 50]
        print(f"brightness rank of the brightest cell of the true boxes, percentiles {q}: {np.percentile(box_rank, q).round(3).tolist()}; "
              f"of E's peak cell: {np.percentile(peak_rank, q).round(3).tolist()}")
    print(f"| E composed as | pointing | pointing15 | lesion IoU≥0.1 / ≥0.3 at τ {tau} | τ re-tuned: IoU≥0.1 / ≥0.3 |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['pointing']:.3f} | {r['pointing15']:.3f} | {r['iou10']:.3f} / {r['iou30']:.3f} | "
              f"{r['best_tau']:.2f}: {r['best_iou10']:.3f} / {r['best_iou30']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "tau": tau, "n": len(files),
                                         "files": files, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
