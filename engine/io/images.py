"""PNG and JPEG radiographs via Pillow (8/16-bit grey, palette, RGB(A), EXIF orientation)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError
from ..types import LoadedImage
from .limits import MAX_PIXELS

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
_KINDS = {"PNG": "png", "JPEG": "jpeg"}


def read_raster(path: str | Path) -> LoadedImage:
    """Decode a PNG/JPEG into (H, W) float32 grey in [0, 1].

    The header is checked before any pixel is decoded: empty files, other formats and
    images above :data:`MAX_PIXELS` are refused with a specific reason. Colour images are
    converted to luminance; 16-bit greys are scaled by 65535; EXIF rotation is applied.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageLoadError(p, f"cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise ImageLoadError(p, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                fmt = im.format
                if fmt not in _KINDS:
                    raise ImageLoadError(p, f"unsupported image format {fmt or 'unknown'} (PNG, JPEG or DICOM expected)")
                w, h = im.size
                if w * h > MAX_PIXELS or w <= 0 or h <= 0:
                    raise ImageLoadError(p, f"image declares {w}x{h} pixels, above the {MAX_PIXELS:,}-pixel limit; refused before decoding")
                im.load()
                arr = _to_grey01(ImageOps.exif_transpose(im))
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(p, "not a PNG, JPEG or DICOM file") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(p, f"decompression bomb refused: {exc}") from exc
    except PermissionError as exc:
        raise ImageLoadError(p, "permission denied") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow raises OSError("image file is truncated ...") and friends for broken data.
        raise ImageLoadError(p, f"cannot decode {fmt if 'fmt' in locals() else 'image'}: {exc}") from exc
    return LoadedImage(pixels=arr, source=p, kind=_KINDS[fmt])  # type: ignore[arg-type]


def _to_grey01(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return (np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0)
    if mode == "I":  # 16-bit PNG decoded as 32-bit int
        arr = np.asarray(im, dtype=np.int64)
        return np.clip(arr / 65535.0, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        return np.nan_to_num((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    if mode == "LA" or mode == "RGBA" or mode == "PA" or (mode == "P" and "transparency" in im.info):
        # Transparent pixels are shown on black, as a radiograph's background is.
        rgba = im.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(black, rgba)
    if im.mode != "L":
        im = im.convert("L")
    return np.asarray(im, dtype=np.float32) / 255.0
