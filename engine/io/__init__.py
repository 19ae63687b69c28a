"""Reading radiographs: PNG/JPEG (:mod:`.images`), DICOM (:mod:`.dicom`), folders (:mod:`.scan`).

:func:`load_images` is the one entry point: it returns one :class:`~engine.types.LoadedImage`
per frame, or raises :class:`~engine.errors.ImageLoadError` with the reason.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ImageLoadError
from ..types import LoadedImage
from .dicom import claims_dicom, is_dicom, read_dataset, read_dicom
from .images import RASTER_SUFFIXES, read_raster
from .limits import MAX_PIXELS

#: Why a file named .dcm that is not DICOM is not read (reported, never skipped silently).
NOT_DICOM = "not a PNG, JPEG or DICOM file: named as DICOM, but no DICM preamble and no readable dataset"

__all__ = ["load_images", "load_image", "is_dicom", "claims_dicom", "read_dataset", "NOT_DICOM", "ImageLoadError", "MAX_PIXELS", "RASTER_SUFFIXES"]


def load_images(path: str | Path, apply_voi: bool = True, model_input: bool = False) -> list[LoadedImage]:
    """All frames of one file as model-ready images (DICOM by its ``DICM`` preamble,
    PNG/JPEG by content). Raises :class:`ImageLoadError` for anything unreadable.

    ``apply_voi=False`` is for display: DICOM pixels skip the VOI LUT and carry the
    header's windows instead (see :func:`.dicom.read_dicom`); with ``model_input`` they also
    keep the model's input from the same decode (:meth:`LoadedImage.for_model`)."""
    p = Path(path)
    if p.is_dir():
        raise ImageLoadError(p, "is a directory, not an image file")
    if not p.exists():
        raise ImageLoadError(p, "file not found")
    if is_dicom(p):
        return read_dicom(p, apply_voi, model_input)
    if claims_dicom(p) and p.stat().st_size > 0:  # (an empty one is reported as empty below)
        raise ImageLoadError(p, NOT_DICOM)
    return [read_raster(p)]


def load_image(path: str | Path, frame: int = 0, apply_voi: bool = True, model_input: bool = False) -> LoadedImage:
    """One frame (default the first) of a file; see :func:`load_images`."""
    frames = load_images(path, apply_voi, model_input)
    if not 0 <= frame < len(frames):
        raise ImageLoadError(path, f"frame {frame} requested but the file has {len(frames)}")
    return frames[frame]
