"""Torch dataset over :class:`~engine.data.sources.Sample` lists, with the paper's
training augmentation: direct resize, horizontal flip, brightness/contrast jitter.

Unreadable images do not stop training: ``__getitem__`` returns ``None`` for them and
:func:`collate` drops them, reporting the path and reason in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ImageLoadError
from ..io import load_image
from ..model.preprocess import resize_direct
from .sources import Sample


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation. Jitter factors are drawn uniformly in [1 - v, 1 + v]."""

    hflip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2


class RadiographDataset(Dataset):
    """Items: ``{"x": (1, S, S) float32, "label": int, "index": int, "source": (1, H, W) | None}``.

    Augmentation is a deterministic function of (seed, epoch, index), so runs and resumed
    runs see the same images.
    """

    def __init__(self, samples: list[Sample], input_size: int, augment: AugmentConfig | None = None, seed: int = 0, with_source: bool = False) -> None:
        self.samples = list(samples)
        self.input_size = input_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.with_source = with_source

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _augment(self, px: np.ndarray, index: int) -> np.ndarray:
        a = self.augment
        if a is None:
            return px
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if rng.random() < a.hflip:
            px = px[:, ::-1]
        b = 1.0 + rng.uniform(-a.brightness, a.brightness)
        c = 1.0 + rng.uniform(-a.contrast, a.contrast)
        mean = float(px.mean())
        return np.clip((px - mean) * c + mean * b, 0.0, 1.0).astype(np.float32)

    def __getitem__(self, index: int) -> dict | None:
        s = self.samples[index]
        try:
            px = load_image(s.path).pixels
        except ImageLoadError as exc:
            return {"error": (str(s.path), exc.reason), "index": index}
        px = np.ascontiguousarray(self._augment(px, index))
        item = {
            "x": torch.from_numpy(resize_direct(px, self.input_size))[None],
            "label": s.label,
            "index": index,
            "source": torch.from_numpy(px)[None] if self.with_source else None,
        }
        return item


def collate(items: list[dict]) -> dict:
    """Stack good items; list the unreadable ones under ``"errors"`` as (path, reason)."""
    good = [it for it in items if "error" not in it]
    errors = [it["error"] for it in items if "error" in it]
    if not good:
        return {"x": None, "label": None, "index": None, "source": None, "errors": errors}
    return {
        "x": torch.stack([it["x"] for it in good]),
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "source": [it["source"] for it in good] if good[0]["source"] is not None else None,
        "errors": errors,
    }
