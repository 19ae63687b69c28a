"""Inference speed: full MSFM ``predict`` vs the backbone forwards it needs (the floor).

For each backbone and batch size, in rotation within one process (this machine drifts
+-30 % minute to minute), it times:

* ``predict``: ``Predictor.predict_batch`` on loaded radiographs (resize, FMA, three
  stages, box selection, fusion, mapping, maps to host);
* ``floor``: only the forwards MSFM cannot avoid on the same batch: the FMA network at
  S, the encoder at S twice (image, look-closer crop) and at 224 for the 7 parts.

It prints per-image milliseconds and the overhead ratio predict / floor, and writes JSON.

    .venv/bin/python benchmarks/bench_inference.py [--size 448] [--batches 1 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import torch
from common import RESULTS, XRAY, Row, print_rows, rotate

from engine.config import ModelConfig
from engine.infer import Predictor
from engine.io import load_image
from engine.model.msfm import MSFM
from engine.model.preprocess import make_batch


def floor_forward(model: MSFM, x: torch.Tensor) -> None:
    cfg = model.config
    b = x.shape[0]
    if model.fma is not None:
        model.fma.net.features(x)
    model.backbone(x)
    model.backbone(x)  # the look-closer crop has the same shape
    model.backbone(torch.rand(b * cfg.num_windows, 1, cfg.part_size, cfg.part_size).contiguous(memory_format=torch.channels_last))


def run(backbones=("resnet18", "resnet50", "efficientnet_lite0"), size: int = 448, batches=(1, 8), repeats: int = 3) -> list[Row]:
    """Overhead ratio predict / floor per backbone and batch (target <= 1.05 at batch 8)."""
    torch.set_flush_denormal(True)  # random-init BN can make denormals that distort CPU timings
    images = [load_image(p) for p in sorted(XRAY.glob("*.png"))[: max(batches)]]
    rows = []
    for name in backbones:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MSFM(ModelConfig(backbone=name, input_size=size), pretrained="auto").eval()
        pred = Predictor(model, device="cpu", forward_chunk=max(batches))  # the same batch as the floor's forwards
        for bs in batches:
            batch = images[:bs]
            x = make_batch(batch, size).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                t = rotate({"predict": lambda: pred.predict_batch(batch), "floor": lambda: floor_forward(model, x)}, repeats)
            ratio = t["predict"] / t["floor"]
            rows.append(Row("inference", f"{name} S={size} batch {bs}: predict / floor", ratio, 1.05 if bs == 8 else None, "<=", "x",
                            f"{1000 * t['predict'] / bs:.0f} vs {1000 * t['floor'] / bs:.0f} ms/img"))
            print_rows(rows[-1:])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50", "efficientnet_lite0"])
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(RESULTS / "inference.json"))
    args = ap.parse_args()
    rows = run(args.backbones, args.size, args.batches, args.repeats)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "rows": [r.to_json() for r in rows]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
