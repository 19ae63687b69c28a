"""Thumbnails for the study browser: decoded once, shrunk with area averaging, uint8.

The browser asks for them lazily (only for rows the user can see), off the UI thread.
A file that cannot be decoded raises :class:`~engine.errors.ImageLoadError` with its
one-line reason, which the browser lists in its error panel.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import load_image


def make_thumbnail(pixels01: np.ndarray, size: int = 128) -> np.ndarray:
    """(h, w) uint8 with the longer side ``size`` (never enlarged) from (H, W) [0, 1] pixels;
    1 = bright, as the model sees the image."""
    h, w = pixels01.shape
    scale = min(1.0, size / max(h, w))
    out = np.clip(pixels01, 0.0, 1.0)
    if scale < 1.0:
        # INTER_AREA averages the pixels a thumbnail pixel covers: no aliasing of fine bone texture.
        out = cv2.resize(out, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return (out * 255.0 + 0.5).astype(np.uint8)


def load_thumbnail(path: str | Path, size: int = 128, frame: int = 0) -> np.ndarray:
    """Decode ``path`` (PNG/JPEG/DICOM, any transfer syntax) and return its thumbnail."""
    return make_thumbnail(load_image(path, frame).pixels, size)


__all__ = ["make_thumbnail", "load_thumbnail"]
