"""Training images/s of the v1 recipe against the speed options of issue 18, in one run.

Each variant is a full MSFM training step (FMA, the three stages, the loss, backward, the
AdamW step) of the default recipe's model (Lite0, 320 px, batch 5) on the same real
radiographs, timed in rotation (``common.rotate``: medians after a warm-up). Variants:

- ``v1``: the shipped recipe (FMA paper, a loss per part window, 224 px parts).
- ``freeze N``: no gradient into the stem and the first N block stages
  (``--freeze-blocks N``): backpropagation stops before the highest-resolution layers.
- ``parts 160``: 160 px part crops instead of 224 (``--part-size 160``; also at inference).
- ``fma off``: the upper bound of what caching the frozen FMA network could save.
- ``lesion``: the lesion recipe (``engine/recipes.py`` ``lesion``).
- ``fine-tune shipped, stride 32 / 16``: a step of one-click fine-tuning of the shipped file
  (nothing frozen, mild FMA) with the object and part stages at 32 (what the app runs:
  ``train_output_stride=32``) and at the 16 the file infers with.

    .venv/bin/python benchmarks/bench_train_recipes.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from common import XRAY, Row, print_rows, rotate

from engine.accel import prepare_for_device, to_device
from engine.io import load_image
from engine.model.msfm import MSFM
from engine.model.preprocess import make_batch
from engine.recipes import DEFAULT_320_RECIPE, DEFAULT_RECIPE, LESION_RECIPE, PLAIN_320_RECIPE, V1_RECIPE
from engine.train.loop import freeze_early_layers
from engine.train.losses import LossConfig, body_part_weights, msfm_loss, sample_weights
from engine.train.setup import TrainConfig

BATCH = 5


def _train_config(recipe: dict, **changes) -> TrainConfig:
    settings = {k: v for k, v in {**recipe, **changes}.items() if k in TrainConfig.__dataclass_fields__}
    return TrainConfig(data="-", **settings)


def _stepper(cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MSFM(cfg.model_config(), pretrained="auto").train()
    freeze_early_layers(model.backbone, cfg.freeze_blocks)
    prepare_for_device(model, torch.device("cpu"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    parts = ["hand"] * len(y)
    table = body_part_weights(y.tolist(), parts)
    loss_cfg = LossConfig(cfg.loss)
    mcfg = model.config

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        theta = model.fma.sample_theta(len(y)) if model.fma is not None else None
        out = model(x, theta=theta, main_only=cfg.model == "plain")  # the plain classifier: the main stage alone, as msfm train runs it
        w = sample_weights(y, parts, table)
        loss = msfm_loss(out.main_logits, out.object_logits, out.part_logits, y, loss_cfg, w,
                         "bag" if mcfg.parts_pool == "lse" else "paper", mcfg.abnormal_index, mcfg.num_paper_windows)["total"]
        loss.backward()
        opt.step()

    return step


def run(repeats: int = 3, only: list[str] | None = None) -> list[Row]:
    torch.set_flush_denormal(True)
    images = [load_image(p) for p in sorted(XRAY.glob("*.png"))[:BATCH]]
    x = to_device(make_batch(images, V1_RECIPE["input_size"]), torch.device("cpu"))
    y = torch.tensor([i % 2 for i in range(BATCH)])
    variants = {
        "v1": _train_config(V1_RECIPE),
        "freeze 2": _train_config(V1_RECIPE, freeze_blocks=2),
        "freeze 3": _train_config(V1_RECIPE, freeze_blocks=3),
        "parts 160": _train_config(V1_RECIPE, part_size=160),
        "fma off": _train_config(V1_RECIPE, fma=False),
        "lesion": _train_config(LESION_RECIPE),
        "default (freeze 2 + mild FMA)": _train_config(DEFAULT_320_RECIPE),  # at v1's 320 px: what the speed target compares
        # One-click fine-tuning of the shipped file (engine/library/finetune.py: nothing frozen,
        # the file's own config): its steps at 32 (train_output_stride, what the app runs) and
        # at the 16 the file infers with (the shipped file's own input size, 448 px since 2026-12-04).
        "fine-tune shipped, stride 32": _train_config(DEFAULT_RECIPE, freeze_blocks=0),
        "fine-tune shipped, stride 16": _train_config(DEFAULT_RECIPE, freeze_blocks=0, output_stride=16),
        # What a larger backbone costs (issue 18): the same recipe on Lite1 / Lite2.
        "Lite1": _train_config(V1_RECIPE, backbone="efficientnet_lite1"),
        "Lite2": _train_config(V1_RECIPE, backbone="efficientnet_lite2"),
        "Lite1 plain": _train_config(PLAIN_320_RECIPE, backbone="efficientnet_lite1"),
        "Lite0 plain": _train_config(PLAIN_320_RECIPE),
    }
    if only:
        variants = {k: v for k, v in variants.items() if k == "v1" or k in only}
    steps = {name: _stepper(cfg, x, y) for name, cfg in variants.items()}
    t = rotate(steps, repeats)
    rows = []
    for name in variants:
        rows.append(Row("train-recipes", f"training images/s, {name} / v1", t["v1"] / t[name], 2.0 if name in ("lesion", "default (freeze 2 + mild FMA)") else None, ">=", "x",
                        f"{BATCH / t[name]:.2f} images/s ({1000 * t[name] / BATCH:.0f} ms/img)"))
    print_rows(rows)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="+", help="time v1 and these variants only (names as printed)")
    a = ap.parse_args()
    run(a.repeats, a.only)
