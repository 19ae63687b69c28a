"""The model's intended use, checked before analysis (issue 16).

The shipped MSFM models learned from FracAtlas: projection radiographs of the hand and
upper limb, the leg, the hip and the shoulder. A network gives *some* probability for any
picture, so images it was never meant to read (a chest film, a CT slice, a 64 × 64 MR, a
16 × 16 thumbnail, a test pattern) are refused before the network runs and are reported
as "outside the model's intended use: <reason>" instead of getting a label and boxes.

:func:`check_scope` looks at what a :class:`~engine.types.LoadedImage` carries: the DICOM
header (modality, photometric interpretation, body part) and the pixels (size, grey
levels, repeated lines). PNG/JPEG files have no header; they are taken for radiographs
when their pixels pass. Every threshold below was measured on the 2,843 FracAtlas images
of ``../shared/data/xray`` and the shared DICOM set (see ``tests/test_scope.py``, which
checks that none of those radiographs is refused).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .types import LoadedImage

#: How every refusal starts, in the panel, the table, the JSON and the exports.
OUT_OF_SCOPE_PREFIX = "outside the model's intended use"
#: Added to results of images that were analysed anyway (research override).
RESEARCH_MARK = "analysed anyway for research use only"

#: DICOM modalities the model reads: computed and digital radiography (DR is not a
#: defined term, but some vendors write it for DX) and radiofluoroscopy frames. MG
#: (mammography), IO/PX (dental) and XA (angiography) are projection images too, but of
#: anatomy and contrast the model never saw.
MODALITIES = ("CR", "DX", "DR", "RF")

#: Body Part Examined values (DICOM PS3.16 Annex L / CID 4031 defined terms, plus the
#: free-text spellings vendors use) of the regions FracAtlas covers: the upper limb from
#: the fingers to the shoulder girdle, the lower limb from the toes to the hip, and the
#: pelvis that hip views show.
LIMB_BODY_PARTS = frozenset({
    # generic
    "EXTREMITY", "EXTREMITIES", "LIMB", "LIMBS", "UPPEREXTREMITY", "LOWEREXTREMITY", "UPPERLIMB", "LOWERLIMB",
    # upper limb and shoulder girdle
    "HAND", "HANDS", "FINGER", "FINGERS", "THUMB", "WRIST", "WRISTS", "CARPUS", "SCAPHOID", "FOREARM", "RADIUS",
    "ULNA", "ELBOW", "ELBOWS", "ARM", "ARMS", "UPPERARM", "HUMERUS", "SHOULDER", "SHOULDERS", "CLAVICLE",
    "SCAPULA", "ACJOINT",
    # lower limb, hip and pelvis
    "LEG", "LEGS", "LOWERLEG", "THIGH", "FEMUR", "HIP", "HIPS", "PELVIS", "KNEE", "KNEES", "PATELLA", "TIBIA",
    "FIBULA", "ANKLE", "ANKLES", "FOOT", "FEET", "TOE", "TOES", "HEEL", "CALCANEUS",
})

#: Smallest image side, in pixels. The network resizes every image to its input size
#: (448 px for the shipped models) and reads 224 px part windows from it; FracAtlas
#: images are 373 px on their shorter side at the least (meta.csv, after the dataset's
#: resize to 512 px on the longer side). Below 128 px the model would look at a > 3.5×
#: upscale that holds none of the trabecular detail a fracture shows in; 128 px leaves a
#: margin of almost 3× under the smallest training image.
MIN_SIDE = 128

#: Fewest distinct grey levels a radiograph may have. Measured: FracAtlas (8-bit PNG)
#: 167 at the least (median 238); the shared DICOM radiographs 231 (8-bit DX) to
#: 25,069; test patterns 2 (checkerboard), 8 (colour bars), 16 (grey steps), 24
#: (pydicom's image_dfl), 38 (SMPTE bars with a 32-step wedge). 64 keeps a 2.6× margin
#: under the least-graded radiograph.
MIN_GREY_LEVELS = 64

#: Largest share of non-blank rows (or columns) that may repeat the previous one exactly.
#: Bars, ramps and wedges drawn along one axis repeat almost every line (0.98-1.0, even
#: after JPEG compression); FracAtlas repeats 0.25 of them at the most (median 0), the
#: shared DICOM radiographs none, and an image upscaled 10× with nearest neighbours
#: 0.90. Blank lines (collimator edges, padding) are left out of the count.
MAX_REPEATED_LINES = 0.95

#: The content checks read at most this many pixels (a strided view of larger images),
#: so a 16k × 16k radiograph costs what a 2k × 2k one does.
_MAX_CHECK_PIXELS = 4_000_000


def describe(reason: str) -> str:
    """The user-facing text for a refusal: ``"outside the model's intended use: <reason>"``."""
    return f"{OUT_OF_SCOPE_PREFIX}: {reason}"


def describe_research(reason: str) -> str:
    """The mark on a result that was computed despite being out of scope (research override)."""
    return f"{describe(reason)}; {RESEARCH_MARK}"


@dataclass(frozen=True)
class OutOfScope:
    """An image (or frame) that was not analysed because it is outside the intended use.

    Attributes:
        file: the source path (``"<array>"`` for in-memory images).
        frame: 0-based frame of a multi-frame DICOM, else None.
        reason: the short reason (see :func:`check_scope`); show :attr:`message`.
        meta: the image's DICOM header values (patient, study, series ids...), for naming
            it in tables; empty for PNG/JPEG.
        width, height: the image size in pixels.
    """

    file: str
    frame: int | None
    reason: str
    meta: dict[str, str] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None

    @classmethod
    def of(cls, image: LoadedImage, reason: str) -> "OutOfScope":
        """The record of ``image`` refused for ``reason``."""
        return cls(file=str(image.source) if image.source is not None else "<array>", frame=image.frame, reason=reason,
                   meta=dict(image.meta), width=image.width, height=image.height)

    @property
    def message(self) -> str:
        """``"outside the model's intended use: <reason>"``."""
        return describe(self.reason)

    def to_json(self) -> dict[str, Any]:
        """``{"file", "reason"}``, plus ``"frame"`` for a frame of a multi-frame file and
        ``"sop_instance_uid"`` for DICOM (as :meth:`Prediction.to_json` has them)."""
        out: dict[str, Any] = {"file": self.file, "reason": self.reason}
        if self.frame is not None:
            out["frame"] = self.frame
        if self.meta.get("SOPInstanceUID"):
            out["sop_instance_uid"] = self.meta["SOPInstanceUID"]
        return out


def check_scope(image: LoadedImage) -> str | None:
    """None when ``image`` is something the model was made to read, else the first
    reason it is not (header first, then size, then pixels), e.g.
    ``"modality CT: the model reads radiographs (CR, DX, DR, RF)"``."""
    problems = scope_problems(image, first_only=True)
    return problems[0] if problems else None


def scope_problems(image: LoadedImage, first_only: bool = False) -> list[str]:
    """Every reason ``image`` is outside the intended use, in the order
    :func:`check_scope` reports them (empty when it is in scope)."""
    out: list[str] = []
    for check in (_modality, _photometric, _body_part, _size, _content):
        reason = check(image)
        if reason:
            out.append(reason)
            if first_only:
                break
    return out


# -- header checks (DICOM only: PNG/JPEG carry none of these) ---------------------------
def _modality(image: LoadedImage) -> str | None:
    if image.kind != "dicom":
        return None
    modality = image.meta.get("Modality", "").strip().upper()
    if not modality:
        return f"the DICOM header has no modality: the model reads radiographs ({', '.join(MODALITIES)})"
    if modality not in MODALITIES:
        return f"modality {modality}: the model reads radiographs ({', '.join(MODALITIES)})"
    return None


def _photometric(image: LoadedImage) -> str | None:
    if image.kind != "dicom":
        return None
    # Absent (a broken header): the reader treats the pixels as MONOCHROME2, and so do we.
    photometric = image.meta.get("PhotometricInterpretation", "MONOCHROME2").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return f"photometric {photometric}: the model reads greyscale radiographs"
    return None


def body_part_in_scope(value: str) -> bool:
    """True for an empty Body Part Examined or one naming a limb, shoulder or hip region.

    Vendors write free text ("L HAND", "TIBIA FIBULA", "UPPER EXTREMITY"): the value is
    accepted when it, with separators removed, or any of its words is a known term."""
    words = re.sub(r"[^A-Z0-9]+", " ", value.upper()).split()
    if not words:
        return True
    return "".join(words) in LIMB_BODY_PARTS or any(w in LIMB_BODY_PARTS for w in words)


def _body_part(image: LoadedImage) -> str | None:
    value = image.meta.get("BodyPartExamined", "").strip()
    if body_part_in_scope(value):
        return None
    return f"body part {value.upper()}: the model was trained on limb, shoulder and hip radiographs"


# -- pixel checks ------------------------------------------------------------------------
def _size(image: LoadedImage) -> str | None:
    if min(image.width, image.height) < MIN_SIDE:
        return f"image {image.width} × {image.height} px is smaller than the {MIN_SIDE} px minimum side"
    return None


def _sampled(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as 16-bit levels (every source here has at most 16 bits, so distinct
    values stay distinct), on a strided grid when the image is very large."""
    step = max(1, math.ceil(math.sqrt(pixels.size / _MAX_CHECK_PIXELS)))
    view = pixels[::step, ::step]
    return np.rint(np.clip(view, 0.0, 1.0) * 65535.0).astype(np.uint16)


def grey_levels(pixels: np.ndarray) -> int:
    """Number of distinct grey levels (at 16-bit precision) of an image in [0, 1]."""
    return int(np.count_nonzero(np.bincount(_sampled(pixels).ravel(), minlength=65536)))


def repeated_line_fraction(pixels: np.ndarray) -> tuple[float, str]:
    """The larger of: the share of non-blank rows equal to the row above, and of non-blank
    columns equal to the column on their left; with ``"rows"`` or ``"columns"``."""
    q = _sampled(pixels)
    best = (0.0, "rows")
    for lines, name in ((q, "rows"), (q.T, "columns")):
        if lines.shape[0] < 2:
            continue
        varied = lines.max(axis=1) != lines.min(axis=1)  # blank lines are padding, not pattern
        repeats = np.all(lines[1:] == lines[:-1], axis=1) & varied[1:]
        n = int(varied[1:].sum())
        if n:
            best = max(best, (float(repeats.sum()) / n, name))
    return best


def _content(image: LoadedImage) -> str | None:
    levels = grey_levels(image.pixels)
    if levels <= 1:
        return "blank image: every pixel has the same grey level"
    if levels < MIN_GREY_LEVELS:
        return f"looks like a test pattern or synthetic image: only {levels} grey levels (radiographs have at least {MIN_GREY_LEVELS})"
    share, name = repeated_line_fraction(image.pixels)
    if share > MAX_REPEATED_LINES:
        other = "row above" if name == "rows" else "column to their left"
        return f"looks like a test pattern or synthetic image: {share:.0%} of its {name} repeat the {other}"
    return None


__all__ = [
    "OUT_OF_SCOPE_PREFIX", "RESEARCH_MARK", "MODALITIES", "LIMB_BODY_PARTS", "MIN_SIDE", "MIN_GREY_LEVELS", "MAX_REPEATED_LINES",
    "OutOfScope", "check_scope", "scope_problems", "describe", "describe_research", "body_part_in_scope", "grey_levels",
    "repeated_line_fraction",
]
