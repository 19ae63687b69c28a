"""Measure horizontal-flip test-time augmentation of a checkpoint on validation data.

    .venv/bin/python scripts/measure_flip_tta.py resources/models/default.pt \\
        --labels ../shared/data/xray/labels.csv --split val [--json OUT.json]

Every image of the split is predicted twice with the engine's own inference path: as it is
and mirrored left to right (``pixels[:, ::-1]``). The mirror's evidence map E is flipped back
onto the original's grid (E's cells are equal fractions of the width, so column ``j`` of the
mirror is column ``We - 1 - j`` of the original). Rows printed (markdown):

- ``as stored``: the image alone (the shipped reading);
- ``mirror only``: the mirrored image alone, its map flipped back;
- ``mean of both``: p = the mean of the two probabilities, E = the mean of the two maps, the
  lesion box read at the checkpoint's τ; ``mean of both, τ re-tuned``: the same maps at the τ
  that ``scripts/tune_lesion_tau.py``'s rule picks for them.

Columns: AUC; κ at the checkpoint's threshold and at the κ-optimal threshold of the row's
probabilities (as training picks it); on the fractured images with boxes, strict pointing,
pointing within 15 px, lesion-box IoU >= 0.1 / 0.3 / 0.5 hit rates (the scoring of
``scripts/tune_lesion_tau.py``). Only a validation split may be used: train and test are refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_lesion_tau import DEFAULT_GRID, REFUSED_SPLITS, pick, score_tau

from engine.data import load_samples
from engine.errors import ImageLoadError
from engine.evaluation.metrics import best_kappa_threshold, classification_metrics
from engine.infer import Predictor
from engine.io import load_image
from engine.types import LoadedImage, Prediction

HEADER = ("| reading | AUC | κ at the stored threshold | κ, threshold re-tuned | τ | pointing | pointing15 | lesion IoU≥0.1 | ≥0.3 | ≥0.5 |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def mirrored(image: LoadedImage) -> LoadedImage:
    """The image flipped left to right (a contiguous copy; the source array is untouched)."""
    return dataclasses.replace(image, pixels=np.ascontiguousarray(image.pixels[:, ::-1]), model_pixels=None
                               if image.model_pixels is None else np.ascontiguousarray(image.model_pixels[:, ::-1]))


def with_evidence(p: Prediction, e: np.ndarray) -> Prediction:
    """``p`` carrying the evidence map ``e`` ((He, We), the original image's grid)."""
    return dataclasses.replace(p, maps=dataclasses.replace(p.maps, evidence=np.ascontiguousarray(e, dtype=np.float32)))


def row(name: str, y: np.ndarray, prob: np.ndarray, stored_threshold: float, preds: list[Prediction], gts: list[np.ndarray], tau: float) -> dict:
    """One reading's figures (see the module doc)."""
    thr = best_kappa_threshold(y, prob)
    out = {"reading": name, "auc": float(roc_auc_score(y, prob)),
           "kappa_stored": float(classification_metrics(y, prob, stored_threshold)["kappa"]),
           "kappa_retuned": float(classification_metrics(y, prob, thr)["kappa"]), "threshold_retuned": float(thr)}
    out.update(score_tau(preds, gts, tau))
    return out


def fmt(r: dict) -> str:
    return (f"| {r['reading']} | {r['auc']:.3f} | {r['kappa_stored']:.3f} | {r['kappa_retuned']:.3f} (at {r['threshold_retuned']:.3f}) | "
            f"{r['tau']:.2f} | {r['pointing']:.3f} | {r['pointing15']:.3f} | {r['iou10']:.3f} | {r['iou30']:.3f} | {r['iou50']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv with a split column and boxes.csv beside it")
    ap.add_argument("--split", default="val", help="validation split (train and test are refused)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the rows (and every image's two probabilities) as JSON here")
    args = ap.parse_args(argv)
    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: validation data only (never {' or '.join(REFUSED_SPLITS)})")

    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, args.batch_size, enforce_scope=False)  # the split was chosen by hand
    cfg = predictor.config
    samples = load_samples(args.labels).split(args.split)
    kept, first, second = [], [], []
    t0 = time.perf_counter()
    for i in range(0, len(samples), args.batch_size):
        images = []
        for s in samples[i:i + args.batch_size]:
            try:
                images.append(load_image(s.path))
                kept.append(s)
            except ImageLoadError as exc:
                print(f"skipped {s.path}: {exc.reason}", file=sys.stderr)
        if images:
            first.extend(predictor.predict_batch(images))
            second.extend(predictor.predict_batch([mirrored(im) for im in images]))
        print(f"\r{len(first)}/{len(samples)}", end="", file=sys.stderr, flush=True)
    per_image = (time.perf_counter() - t0) / max(1, len(first))
    print(file=sys.stderr)
    if not kept:
        raise SystemExit(f"{args.labels}: no readable images in split {args.split!r}")

    y = np.array([s.label for s in kept])
    pa = np.array([p.probability for p in first])
    pb = np.array([p.probability for p in second])
    boxed = [i for i, s in enumerate(kept) if s.label == 1 and s.boxes]
    gts = [np.asarray(kept[i].boxes, dtype=np.float64).reshape(-1, 4) for i in boxed]
    alone = [first[i] for i in boxed]
    mirror = [with_evidence(first[i], second[i].maps.evidence[:, ::-1]) for i in boxed]
    mean = [with_evidence(first[i], (first[i].maps.evidence + second[i].maps.evidence[:, ::-1]) / 2) for i in boxed]
    tau = cfg.lesion_tau
    tuned = pick([score_tau(mean, gts, float(t)) for t in DEFAULT_GRID])["tau"]
    rows = [row("as stored", y, pa, cfg.threshold, alone, gts, tau),
            row("mirror only", y, pb, cfg.threshold, mirror, gts, tau),
            row("mean of both", y, (pa + pb) / 2, cfg.threshold, mean, gts, tau),
            row("mean of both, τ re-tuned", y, (pa + pb) / 2, cfg.threshold, mean, gts, tuned)]
    print(f"{len(kept)} {args.split} images, {len(boxed)} fractured with boxes ({args.labels}); {args.checkpoint}; "
          f"{per_image:.2f} s per image for both readings")
    print(HEADER)
    for r in rows:
        print(fmt(r))
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "n": len(kept), "n_boxed": len(boxed),
                                         "s_per_image_both": per_image, "rows": rows, "files": [str(s.path) for s in kept],
                                         "p_image": pa.tolist(), "p_mirror": pb.tolist()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
