"""Measure inference-time settings of a trained checkpoint on the validation split.

    .venv/bin/python scripts/tune_inference.py RUN/best.pt ../shared/data/xray/labels.csv \\
        --theta 0.6 0.7 0.8 --crop-from input source [--no-fma-variant] [--json OUT.json] [--write OUT.pt]

Each variant (FMA θ × look-closer crop source, optionally FMA off) predicts the split
once; the decision threshold is re-tuned for κ and γ for the IoU ≥ 0.1 hit rate, as
training does on validation. ``--write`` saves the κ-best variant's configuration with the
same weights. Only train/val are ever used for choices; nothing here looks at a test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from pathlib import Path

from engine.data.sources import load_samples
from engine.evaluation.evaluate import evaluate_predictions, predict_samples, tune_gamma
from engine.evaluation.metrics import best_kappa_threshold
from engine.infer import Predictor
from engine.model.checkpoint import load_checkpoint, save_checkpoint
from engine.model.fma import FMA


def apply_config(model, config) -> None:
    """Point ``model`` at ``config``'s inference settings (same weights)."""
    model.config = config
    if config.fma.enabled:
        if model.fma is None:
            model.fma = FMA(config.fma)
        model.fma.config = config.fma
    else:
        model.fma = None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("data")
    ap.add_argument("--split", default="val")
    ap.add_argument("--theta", type=float, nargs="+", default=[0.6])
    ap.add_argument("--crop-from", nargs="+", default=["input"], choices=["input", "source"])
    ap.add_argument("--no-fma-variant", action="store_true", help="also try FMA switched off")
    ap.add_argument("--json")
    ap.add_argument("--write", metavar="OUT.pt")
    args = ap.parse_args()
    ck = load_checkpoint(args.checkpoint)
    samples = load_samples(args.data).split(args.split)
    base = ck.config
    variants = [base.with_(fma=dataclasses.replace(base.fma, enabled=True, theta=t), crop_from=c) for t, c in itertools.product(args.theta, args.crop_from)]
    if args.no_fma_variant:
        variants.append(base.with_(fma=dataclasses.replace(base.fma, enabled=False), crop_from=args.crop_from[0]))
    rows = []
    for cfg in variants:
        apply_config(ck.model, cfg)
        t0 = time.perf_counter()
        kept, preds, _ = predict_samples(Predictor(ck.model, device="cpu"), samples)
        secs = (time.perf_counter() - t0) / max(1, len(kept))
        y, prob = [s.label for s in kept], [p.probability for p in preds]
        thr = best_kappa_threshold(y, prob)
        gamma, _ = tune_gamma(kept, preds)
        m = evaluate_predictions(kept, preds, thr)
        name = f"fma θ {cfg.fma.theta}" if cfg.fma.enabled else "fma off"
        row = {"variant": f"{name}, crop from {cfg.crop_from}", "threshold": thr, "gamma": gamma, "auc": m["auc"], "kappa": m["kappa"],
               "accuracy": m["accuracy"], "stages_auc": {k: v["auc"] for k, v in m["stages"].items()},
               "localization": m["localization"], "seconds_per_image": secs, "config": cfg}
        rows.append(row)
        loc = m["localization"]
        print(f"{row['variant']:32s} AUC {m['auc']:.3f} κ {m['kappa']:.3f} acc {m['accuracy']:.3f} | IoU≥0.1 {loc['iou10']:.3f} pointing {loc['pointing']:.3f} "
              f"(cam {loc['pointing_cam']:.3f}, w1 {loc['pointing_window1']:.3f}) | {secs:.2f} s/img", flush=True)
    best = max(rows, key=lambda r: (r["kappa"], r["auc"]))
    print(f"best by κ: {best['variant']}")
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k != "config"} for r in rows], indent=1))
    if args.write:
        cfg = best["config"].with_(threshold=best["threshold"], gamma=best["gamma"] if not math.isnan(best["gamma"]) else best["config"].gamma)
        apply_config(ck.model, cfg)
        meta = {k: v for k, v in ck.meta.items() if k not in ("created", "engine_version")}
        meta["inference_tuned"] = {"variant": best["variant"], "from_sha256": ck.sha256}
        print(f"wrote {args.write} sha256 {save_checkpoint(args.write, ck.model, meta, config=cfg)}")


if __name__ == "__main__":
    main()
