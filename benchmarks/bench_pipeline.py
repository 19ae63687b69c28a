"""Batched MSFM inference vs a naive per-image reference, the way the published code
works: one image at a time, per-image ``F.interpolate`` crops, window scores in Python
loops, NumPy NMS and per-image connected components (``reference/msfm.py``, which
the tests also use to check that both give the same boxes and probabilities).

    .venv/bin/python benchmarks/bench_pipeline.py [--backbone efficientnet_lite0] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
from common import XRAY, Row, print_rows, rotate

from engine.config import ModelConfig
from engine.infer import Predictor
from engine.io import load_image
from engine.model.msfm import MSFM
from reference.msfm import reference_predict


def run(backbone: str = "efficientnet_lite0", size: int = 448, batch: int = 8, repeats: int = 2) -> list[Row]:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MSFM(ModelConfig(backbone=backbone, input_size=size), pretrained="auto").eval()
    images = [load_image(p) for p in sorted(XRAY.glob("*.png"))[:batch]]
    naive_model = copy.deepcopy(model)  # plain NCHW float32, as the published code runs it
    pred = Predictor(model, device="cpu", batch_size=batch)
    with torch.inference_mode():
        t = rotate({"batched": lambda: pred.predict_batch(images), "naive": lambda: [reference_predict(naive_model, im) for im in images]}, repeats)
    ratio = t["naive"] / t["batched"]
    rows = [Row("pipeline", f"{backbone} S={size}, {batch} images: naive / batched", ratio, 3.0, ">=", "x",
                f"{1000 * t['naive'] / batch:.0f} vs {1000 * t['batched'] / batch:.0f} ms/img")]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    run(a.backbone, a.size, a.batch, a.repeats)
