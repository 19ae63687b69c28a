"""Named training recipes: the exact settings that produced a shipped model.

``msfm train DATA --recipe default`` (and ``scripts/train_default.sh``) re-trains the
bundled default model from ``../shared/data/xray``; the model card quotes this recipe.
"""

from __future__ import annotations

from typing import Any

#: The bundled default model (issue 4). Values not listed are TrainConfig defaults.
DEFAULT_RECIPE: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "pretrained": "auto",
    "model": "msfm",
    "input_size": 320,
    "part_size": 224,
    "fma": True,
    "loss": "awfl",
    "optimizer": "adamw",
    "lr": 3e-4,
    "epochs": 6,
    "lr_step": 4,
    "batch_size": 5,
    "seed": 0,
}

RECIPES: dict[str, dict[str, Any]] = {"default": DEFAULT_RECIPE}
