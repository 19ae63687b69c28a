"""What FMA removes: input | FMA'd input | attention, for a few radiographs.

Prints the fraction of pixels suppressed per image and writes a PNG panel, so the effect
of theta/r (paper §2.6) can be judged by eye: FMA should dim burned-in letters and
markers, not the anatomy.

    .venv/bin/python benchmarks/fma_preview.py [IMAGES...] [--size 320] [--theta 0.6] [--r 0.15] [--out fma.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.config import FMAConfig
from engine.io import load_image
from engine.model.fma import FMA
from engine.model.preprocess import make_batch

REPO = Path(__file__).resolve().parents[1]
DEFAULT = [REPO / "resources" / "demo" / f for f in ("IMG0000188.png", "IMG0000030.png", "IMG0001980.png", "IMG0002447.png")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="*", default=[str(p) for p in DEFAULT])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--theta", type=float, default=0.6)
    ap.add_argument("--r", type=float, default=0.15)
    ap.add_argument("--out", default="fma_preview.png")
    args = ap.parse_args()
    fma = FMA(FMAConfig(theta=args.theta, r=args.r))
    x = make_batch([load_image(p) for p in args.images], args.size)
    with torch.no_grad():
        y, att = fma(x)
    high = att >= args.theta * att.amax(dim=(1, 2), keepdim=True)
    rows = []
    for i, p in enumerate(args.images):
        a = att[i].numpy()
        a = (a - a.min()) / (a.max() - a.min() + 1e-12)
        rows.append(np.concatenate([x[i, 0].numpy(), y[i, 0].numpy(), a], axis=1))
        print(f"{Path(p).name}: {100 * float(high[i].float().mean()):.1f} % of pixels suppressed")
    Image.fromarray((np.clip(np.concatenate(rows, 0), 0, 1) * 255).astype(np.uint8)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
