"""Memory over a long prediction run: 2,000 images through ``Predictor.iter_predict``
(real radiographs, repeated), resident memory sampled after every batch. Reported: the
growth from the end of warm-up (the first 200 images) to the end, as a ratio. The model
is small (ResNet-18 at 128 px) so the run takes a minute; what could leak — decoded
images, predictions, maps, autograd state — is the same at any size.

    .venv/bin/python benchmarks/bench_memory.py [--images 2000]
"""

from __future__ import annotations

import argparse
import gc
import warnings

import torch
from common import XRAY, Row, print_rows, rss_mb

from engine.config import ModelConfig
from engine.infer import Predictor
from engine.model.msfm import MSFM


def run(n: int = 2000, warmup: int = 200, size: int = 128) -> list[Row]:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MSFM(ModelConfig(backbone="resnet18", input_size=size, part_size=64), pretrained="none").eval()
    files = sorted(XRAY.glob("*.png"))[:100]
    paths = [files[i % len(files)] for i in range(n)]
    pred = Predictor(model, device="cpu", batch_size=8)
    samples: list[tuple[int, float]] = []
    kept = 0
    for step in pred.iter_predict(paths):
        kept += len(step.predictions)  # a consumer that keeps nothing but counts
        if step.done >= warmup and (not samples or step.done - samples[-1][0] >= 100):
            gc.collect()
            samples.append((step.done, rss_mb()))
    start, end = samples[0][1], samples[-1][1]
    rows = [Row("memory", f"RSS after {n} images / after {warmup}", end / start, 1.05, "<=", "x",
                f"{start:.0f} -> {end:.0f} MB, max {max(s for _, s in samples):.0f} MB, {kept} predictions")]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    a = ap.parse_args()
    run(a.images)
