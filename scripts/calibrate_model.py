"""Add a validation calibration (:mod:`engine.model.calibration`) to an existing checkpoint.

    .venv/bin/python scripts/calibrate_model.py resources/models/default.pt \\
        --labels ../shared/data/xray/labels.csv --split val [--out OUT.pt] [--source TEXT]

Runs the model over the validation split (the engine's own inference path, as ``msfm
evaluate`` does), measures the operating points, borderline band, miss rate and fixed map
scale from the predictions' probabilities and ``maps.cam``/``maps.a``, and writes a copy of
the checkpoint with ``meta["calibration"]`` added; config, the rest of the metadata and the
weights (in their stored dtype) are kept as they are. Without ``--out`` the copy is written
beside the checkpoint as ``NAME.calibrated.pt``; ``--out`` may name the checkpoint itself.

The copy is written to a temporary file first and only moved into place once its weights
equal the original's bit for bit and its probabilities on ``--check`` validation images are
identical (max |Δp| = 0), so a failed run leaves the original untouched (SPEC §6).
Checkpoints trained by this engine already carry a calibration (``engine/train/loop.py``);
this script is for older ones such as the first shipped default model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from engine.config import ModelConfig
from engine.data import load_samples
from engine.evaluation.evaluate import predict_samples
from engine.infer import Predictor
from engine.io import load_image
from engine.model.calibration import MAP_KINDS, Calibration, calibrate
from engine.model.checkpoint import load_checkpoint, read_checkpoint, rewrite_checkpoint
from engine.types import ModelInfo

#: Splits the calibration may never be measured on: training images flatter the model,
#: and a test split used to tune would no longer be a test.
REFUSED_SPLITS = ("train", "test")


def describe(cal: Calibration) -> str:
    """The calibration as a few readable lines."""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    lines = [f"calibration on {cal.source}: n = {cal.n} ({cal.n_abnormal} abnormal, {cal.n_normal} normal)"]
    for op in cal.points:
        lines.append(f"  {op.name:9s} p >= {op.threshold:.4f}: sensitivity {pct(op.sensitivity)}, specificity {pct(op.specificity)}")
    lines.append(f"  borderline band {cal.borderline[0]:.4f} – {cal.borderline[1]:.4f}; miss rate at the threshold {pct(cal.miss_rate)}")
    for kind, (lo, hi) in (cal.map_scale or {}).items():
        lines.append(f"  map scale {kind}: {lo:.4g} – {hi:.4g}")
    lines.append(f"  method: {cal.method}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv (or any data source engine.data reads) with a split column")
    ap.add_argument("--split", default="val", help="the validation split to calibrate on (default val; train and test are refused)")
    ap.add_argument("--out", type=Path, help="where to write the calibrated copy (default: CHECKPOINT.calibrated.pt beside it)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--check", type=int, default=8, help="validation images on which the copy must give identical outputs")
    ap.add_argument("--source", help="the validation data in words, stored and shown in the app (default: 'LABELS, split=SPLIT')")
    ap.add_argument("--json", type=Path, help="also write the calibration as JSON here")
    args = ap.parse_args(argv)

    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: calibrate on validation data only (never {' or '.join(REFUSED_SPLITS)})")
    samples = load_samples(args.labels).split(args.split)
    if not samples:
        ap.error(f"{args.labels}: no images in split {args.split!r}")
    out = args.out or args.checkpoint.with_name(args.checkpoint.stem + ".calibrated.pt")

    ck = load_checkpoint(args.checkpoint, args.device)
    info = ModelInfo(sha256=ck.sha256, backbone=ck.config.backbone, input_size=ck.config.input_size, name=str(ck.meta.get("name", "MSFM")))
    predictor = Predictor(ck.model, info, args.device, args.batch_size)
    progress = lambda done, total: print(f"\r{done}/{total} validation images", end="", file=sys.stderr, flush=True)  # noqa: E731
    kept, preds, errors = predict_samples(predictor, samples, progress)
    print(file=sys.stderr)
    for path, reason in errors:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    maps = {kind: [getattr(p.maps, kind) for p in preds] for kind in MAP_KINDS}
    cal = calibrate([p.probability for p in preds], [s.label for s in kept], maps, ck.config.threshold,
                    source=args.source or f"{args.labels.name}, split={args.split}")
    print(describe(cal))

    # The copy keeps everything but the file-level stamps save_checkpoint writes afresh.
    meta = {**ck.meta, "calibration": cal.to_dict(), "calibrated_from_sha256": ck.sha256}
    check = [load_image(s.path) for s in kept[: max(1, args.check)]]
    sha = rewrite_checkpoint(args.checkpoint, out, ck.model, meta, ck.config, lambda tmp: verify(args.checkpoint, tmp, check, args.device))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {sha}; was {ck.sha256})")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(out), "sha256": sha, "calibration": cal.to_dict()}, indent=1, ensure_ascii=False) + "\n")
    return 0


def verify(original: Path, copy: Path, images: list, device: str) -> None:
    """Raise unless ``copy`` holds the same weights and config as ``original`` and gives
    identical probabilities on ``images``."""
    a, b = read_checkpoint(original), read_checkpoint(copy)
    # Parsed, so a key the engine gained since (with its default) is no difference.
    if ModelConfig.from_dict(json.loads(a["config"])) != ModelConfig.from_dict(json.loads(b["config"])):
        raise SystemExit("the copy's configuration differs from the original's; not written")
    sa, sb = a["state_dict"], b["state_dict"]
    if sa.keys() != sb.keys() or any(sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k]) for k in sa):
        raise SystemExit("the copy's weights differ from the original's; not written")
    pa = Predictor.from_checkpoint(original, device).predict_batch(images)
    pb = Predictor.from_checkpoint(copy, device).predict_batch(images)
    dp = max(abs(x.probability - y.probability) for x, y in zip(pa, pb))
    print(f"copy vs original on {len(images)} validation images: max |Δp| = {dp:.3g}, weights identical")
    if dp != 0.0:
        raise SystemExit(f"the copy's outputs moved (max |Δp| {dp:.3g}); not written")


if __name__ == "__main__":
    raise SystemExit(main())
