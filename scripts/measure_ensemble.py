"""Measure an ensemble of checkpoints on validation data: is the plateau variance or bias?

    .venv/bin/python scripts/measure_ensemble.py resources/models/default.pt runs/a/default.pt ... \\
        --labels ../shared/data/xray/labels.csv --split val [--cache DIR] [--json OUT.json]

Every checkpoint predicts every image of the split with the engine's own inference path
(``Predictor``, each file's own configuration). Rows printed (markdown):

- each checkpoint alone (its stored threshold and τ, as ``msfm evaluate`` reads it);
- ``mean of all``: p = the mean of the files' probabilities, E = the mean of their evidence
  maps (every file's E is (ceil(H/4), ceil(W/4)) over the whole original image, so they add
  cell for cell; logit units, as ``scripts/measure_flip_tta.py`` averages a mirror), the
  threshold re-tuned for κ on the split as training picks it and τ re-tuned by
  ``scripts/tune_lesion_tau.py``'s rule — both chosen on the split they are scored on, like
  every single file's, so the row is as optimistic as theirs.

Columns: AUC, κ at the row's threshold, strict pointing, pointing within 15 px, lesion-box
IoU >= 0.1 / 0.3 hit rates; for the mean, stratified bootstrap intervals (engine.bootstrap's
1,000 resamples, seed 0) of AUC and pointing and of its paired difference from the first
checkpoint. ``--cache DIR`` keeps each file's probabilities and maps (keyed by its sha256)
so that a rerun with another set of files predicts only the new ones. An unreadable image is
named and left out for every file. Validation data only: train and test are refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_lesion_tau import DEFAULT_GRID, REFUSED_SPLITS, image_scores, pick, score_maps

from engine.bootstrap import stratified_indices
from engine.data import load_samples
from engine.errors import ImageLoadError
from engine.evaluation.metrics import best_kappa_threshold, classification_metrics
from engine.infer import Predictor
from engine.io import load_image
from engine.model.described import file_sha256

HEADER = ("| reading | AUC | κ (threshold) | τ | pointing | pointing15 | lesion IoU≥0.1 | ≥0.3 |\n"
          "|---|---|---|---|---|---|---|---|")


def predict_file(checkpoint: Path, samples: list, boxed: set[int], device: str, batch_size: int) -> dict:
    """Probabilities (N,) of every sample and evidence maps (He, We) of the ``boxed`` ones, plus the file's threshold and τ."""
    predictor = Predictor.from_checkpoint(checkpoint, device, batch_size, enforce_scope=False)  # the split was chosen by hand
    probs, maps, t0 = [], {}, time.perf_counter()
    for i in range(0, len(samples), batch_size):
        idx, images = [], []
        for j in range(i, min(i + batch_size, len(samples))):
            try:
                images.append(load_image(samples[j].path))
                idx.append(j)
            except ImageLoadError as exc:
                raise SystemExit(f"{samples[j].path}: {exc.reason} (it was readable a moment ago; every file must read the same images)") from exc
        for j, p in zip(idx, predictor.predict_batch(images)):
            probs.append(p.probability)
            if j in boxed:
                maps[j] = p.maps.evidence.astype(np.float32)
        print(f"\r{checkpoint}: {len(probs)}/{len(samples)}", end="", file=sys.stderr, flush=True)
    print(f" ({(time.perf_counter() - t0) / len(samples):.2f} s per image)", file=sys.stderr)
    return {"prob": np.array(probs), "maps": maps, "threshold": float(predictor.config.threshold), "tau": float(predictor.config.lesion_tau)}


def load_or_predict(checkpoint: Path, cache: Path | None, samples: list, boxed: set[int], device: str, batch_size: int) -> dict:
    if cache is None:
        return predict_file(checkpoint, samples, boxed, device, batch_size)
    key = hashlib.sha256((file_sha256(checkpoint) + "".join(str(s.path) for s in samples)).encode()).hexdigest()[:20]
    f = cache / f"{key}.npz"
    if f.is_file():
        z = np.load(f)
        return {"prob": z["prob"], "maps": {int(k[1:]): z[k] for k in z.files if k.startswith("m")},
                "threshold": float(z["threshold"]), "tau": float(z["tau"])}
    r = predict_file(checkpoint, samples, boxed, device, batch_size)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(f, prob=r["prob"], threshold=r["threshold"], tau=r["tau"], **{f"m{k}": v for k, v in r["maps"].items()})
    return r


def localisation(maps: list[np.ndarray], sizes: list[tuple[int, int]], gts: list[np.ndarray], tau: float | None) -> dict:
    """score_maps at ``tau``, or at the τ tune_lesion_tau's rule picks when ``tau`` is None."""
    if tau is None:
        return pick([score_maps(maps, sizes, gts, float(t)) for t in DEFAULT_GRID])
    return score_maps(maps, sizes, gts, tau)


def row(name: str, y: np.ndarray, prob: np.ndarray, threshold: float, loc: dict) -> dict:
    return {"reading": name, "auc": float(roc_auc_score(y, prob)), "threshold": threshold,
            "kappa": float(classification_metrics(y, prob, threshold)["kappa"]), **loc}


def fmt(r: dict) -> str:
    return (f"| {r['reading']} | {r['auc']:.3f} | {r['kappa']:.3f} ({r['threshold']:.3f}) | {r['tau']:.2f} | {r['pointing']:.3f} | "
            f"{r['pointing15']:.3f} | {r['iou10']:.3f} | {r['iou30']:.3f} |")


def interval(v: np.ndarray) -> list[float]:
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv with a split column and boxes.csv beside it")
    ap.add_argument("--split", default="val", help="validation split (train and test are refused)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cache", type=Path, help="keep each file's predictions here (reruns predict only new files)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: validation data only (never {' or '.join(REFUSED_SPLITS)})")
    if len(args.checkpoints) < 2:
        ap.error("an ensemble needs at least two checkpoints")

    samples, sizes_of = [], {}
    for s in load_samples(args.labels).split(args.split):
        try:
            im = load_image(s.path)
        except ImageLoadError as exc:
            print(f"skipped {s.path}: {exc.reason}", file=sys.stderr)
            continue
        sizes_of[len(samples)] = (im.width, im.height)
        samples.append(s)
    y = np.array([s.label for s in samples])
    if len(set(y.tolist())) < 2:
        raise SystemExit(f"{args.labels}: split {args.split!r} needs readable normal and fractured images (AUC, κ)")
    boxed = [i for i, s in enumerate(samples) if s.label == 1 and s.boxes]
    if not boxed:
        raise SystemExit(f"{args.labels}: no fractured image of split {args.split!r} has a box in boxes.csv")
    gts = [np.asarray(samples[i].boxes, dtype=np.float64).reshape(-1, 4) for i in boxed]
    sizes = [sizes_of[i] for i in boxed]
    runs = [load_or_predict(c, args.cache, samples, set(boxed), args.device, args.batch_size) for c in args.checkpoints]

    rows = []
    for c, r in zip(args.checkpoints, runs):
        rows.append(row(str(c), y, r["prob"], r["threshold"], localisation([r["maps"][i] for i in boxed], sizes, gts, r["tau"])))
    prob = np.mean([r["prob"] for r in runs], axis=0)
    maps = [np.mean([r["maps"][i] for r in runs], axis=0) for i in boxed]
    rows.append(row(f"mean of all {len(runs)}", y, prob, best_kappa_threshold(y, prob), localisation(maps, sizes, gts, None)))

    # Paired bootstrap of the mean against the first file: the same resampled images score both.
    # Strict pointing does not depend on τ: the peak is E's highest cell whatever the box.
    first = runs[0]["prob"]
    hit_mean = image_scores(maps, sizes, gts, runs[0]["tau"])[1]
    hit_first = image_scores([runs[0]["maps"][i] for i in boxed], sizes, gts, runs[0]["tau"])[1]
    pos_in_boxed = {i: k for k, i in enumerate(boxed)}
    auc_m, auc_d, pt_m, pt_d = [], [], [], []
    for idx in stratified_indices(y):
        auc_m.append(roc_auc_score(y[idx], prob[idx]))
        auc_d.append(auc_m[-1] - roc_auc_score(y[idx], first[idx]))
        k = [pos_in_boxed[i] for i in idx if i in pos_in_boxed]
        pt_m.append(hit_mean[k].mean())
        pt_d.append(hit_mean[k].mean() - hit_first[k].mean())
    ci = {"auc": interval(np.array(auc_m)), "auc_minus_first": interval(np.array(auc_d)),
          "pointing": interval(np.array(pt_m)), "pointing_minus_first": interval(np.array(pt_d)),
          "p_auc_gain": float(np.mean(np.array(auc_d) > 0))}

    print(f"{len(samples)} {args.split} images, {len(boxed)} fractured with boxes ({args.labels})")
    print(HEADER)
    for r in rows:
        print(fmt(r))
    print(f"mean of all: AUC [95 % CI] {ci['auc'][0]:.3f}–{ci['auc'][1]:.3f}, minus the first file's {ci['auc_minus_first'][0]:+.3f} – "
          f"{ci['auc_minus_first'][1]:+.3f} (higher in {100 * ci['p_auc_gain']:.0f} % of resamples); strict pointing {ci['pointing'][0]:.3f}–"
          f"{ci['pointing'][1]:.3f}, minus the first file's {ci['pointing_minus_first'][0]:+.3f} – {ci['pointing_minus_first'][1]:+.3f}")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "n": len(samples), "n_boxed": len(boxed), "checkpoints": [str(c) for c in args.checkpoints],
                                         "rows": rows, "ci_mean": ci}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
