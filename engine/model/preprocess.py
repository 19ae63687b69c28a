"""Turning loaded radiographs into network input (SPEC §3: a direct resize to S x S)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..types import LoadedImage

if TYPE_CHECKING:  # the torch-free predictor uses batch_array alone
    from torch import Tensor


def resize_direct(pixels: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float32 -> (size, size) float32; area averaging when shrinking, bilinear when growing."""
    h, w = pixels.shape
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(pixels, (size, size), interpolation=interp)


def batch_array(images: Sequence[LoadedImage], size: int) -> np.ndarray:
    """(B, 1, S, S) float32 array of directly resized images in [0, 1]."""
    out = np.empty((len(images), 1, size, size), np.float32)
    for i, im in enumerate(images):
        out[i, 0] = resize_direct(im.pixels, size)
    return out


def make_batch(images: Sequence[LoadedImage], size: int) -> Tensor:
    """(B, 1, S, S) float32 CPU tensor of directly resized images in [0, 1]."""
    import torch

    return torch.from_numpy(batch_array(images, size))
