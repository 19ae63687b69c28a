"""Expanding user-given paths into image files (recursive, DICOM by preamble)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .dicom import claims_dicom, is_dicom
from .images import RASTER_SUFFIXES

#: MURA's layout (``patientNNNNN/studyN_positive|negative/``): the patient and study folder names
#: the study index and the training data reader both recognise.
MURA_PATIENT = re.compile(r"^patient\d+$")
MURA_STUDY = re.compile(r"^study\d+_(positive|negative)$")


def is_candidate(path: Path) -> bool:
    """A file worth trying: a PNG/JPEG by suffix, a name that claims DICOM (so that one that
    is not is reported, not skipped), or DICOM by content (any or no suffix)."""
    return path.suffix.lower() in RASTER_SUFFIXES or claims_dicom(path) or is_dicom(path)


def iter_image_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files to load, in a stable order. Folders are walked recursively (symlinked
    folders are not followed, so loops cannot hang the walk) and only candidates are
    kept; a file named explicitly is always yielded, so that its loader can say why it
    cannot be read."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    if name == "DICOMDIR" or not f.is_file():
                        continue
                    if is_candidate(f):
                        yield f
        else:
            yield p
