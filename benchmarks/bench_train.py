"""A training step, batched vs a naive per-image loop, and peak memory.

Batched: one forward/backward of the whole batch (FMA, the three stages and the loss on
all images at once), then the optimiser step. Naive: what per-image code does, one image
at a time through the same model with gradient accumulation, then one optimiser step.
Both use the default recipe's model (Lite0, 320 px, batch 5, AdamW) on real radiographs.

    .venv/bin/python benchmarks/bench_train.py [--size 320] [--batch 5]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from common import XRAY, Row, peak_rss_mb, print_rows, rotate, rss_mb

from engine.accel import prepare_for_device, to_device
from engine.config import ModelConfig
from engine.io import load_image
from engine.model.msfm import MSFM
from engine.model.preprocess import make_batch
from engine.train.losses import LossConfig, body_part_weights, msfm_loss, sample_weights


def run(backbone: str = "efficientnet_lite0", size: int = 320, batch: int = 5, repeats: int = 2) -> list[Row]:
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MSFM(ModelConfig(backbone=backbone, input_size=size, part_size=224 * size // 320), pretrained="auto").train()
    prepare_for_device(model, torch.device("cpu"))  # as the training loop runs it: channels_last
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    x = to_device(make_batch([load_image(p) for p in sorted(XRAY.glob("*.png"))[:batch]], size), torch.device("cpu"))
    y = torch.tensor([i % 2 for i in range(batch)])
    loss_cfg = LossConfig()
    parts = ["hand"] * batch
    table = body_part_weights(y.tolist(), parts)

    def step(xb, yb) -> torch.Tensor:
        out = model(xb)
        w = sample_weights(yb, parts[: len(yb)], table)
        loss = msfm_loss(out.main_logits, out.object_logits, out.part_logits, yb, loss_cfg, w)["total"]
        loss.backward()
        return loss

    def batched() -> None:
        opt.zero_grad(set_to_none=True)
        step(x, y)
        opt.step()

    def naive() -> None:
        opt.zero_grad(set_to_none=True)
        for i in range(batch):
            step(x[i:i + 1], y[i:i + 1])
        opt.step()

    before = rss_mb()
    t = rotate({"batched": batched, "naive": naive}, repeats)
    ratio = t["naive"] / t["batched"]
    rows = [
        Row("train", f"{backbone} S={size}, batch {batch}: naive / batched step", ratio, 2.0, ">=", "x",
            f"{1000 * t['naive'] / batch:.0f} vs {1000 * t['batched'] / batch:.0f} ms/img"),
        Row("train", "peak RSS of the training process", peak_rss_mb(), None, "<=", "MB", f"{before:.0f} MB before the steps"),
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    run(size=a.size, batch=a.batch, repeats=a.repeats)
