"""Write the shippable copy of a trained checkpoint: no training state, float32 or float16 weights.

    .venv/bin/python scripts/ship_model.py RUN/best.pt resources/models/default.pt [--dtype float16]

It prints how far the copy's outputs move from the original on the demo study (the full
check is ``msfm evaluate`` of both on val). The default model ships in float32: float16
flipped one of 213 val labels (κ 0.488 → 0.480, docs/adr/0003-default-model.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engine.infer import Predictor
from engine.io import load_image
from engine.io.scan import iter_image_files
from engine.model.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--check", default=str(REPO / "resources" / "demo"), help="folder of images to compare outputs on")
    args = ap.parse_args()
    ck = load_checkpoint(args.source)
    meta = {k: v for k, v in ck.meta.items() if k not in ("created", "engine_version")}
    meta.update(weights_dtype=args.dtype, shipped_from_sha256=ck.sha256)
    sha = save_checkpoint(args.out, ck.model, meta, config=ck.config, weights_dtype=getattr(torch, args.dtype))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB, sha256 {sha})")

    ims = [load_image(p) for p in iter_image_files([args.check])]
    if not ims:
        return
    a = Predictor.from_checkpoint(args.source, "cpu").predict_batch(ims)
    b = Predictor.from_checkpoint(args.out, "cpu").predict_batch(ims)
    dp = max(abs(x.probability - y.probability) for x, y in zip(a, b))
    db = max(max(abs(u - v) for u, v in zip(x.fused_box, y.fused_box)) for x, y in zip(a, b))
    same = sum(x.label == y.label for x, y in zip(a, b))
    print(f"{args.dtype} copy vs original on {len(ims)} images of {args.check}: max |dp| {dp:.2e}, max fused-box shift {db:.2f} px, same label {same}/{len(ims)}")


if __name__ == "__main__":
    main()
