"""Plain-data results of the engine: loaded images and predictions.

Boxes are ``(x0, y0, x1, y1)`` floats in pixels of the **original image** (the file as
loaded, before any resize), x right, y down, continuous pixel edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .layers import Layer, msfm_layers

BoxXYXY = tuple[float, float, float, float]


@dataclass(frozen=True)
class DisplayWindow:
    """A display window from the DICOM header (VOI LUT module), in the units of
    :attr:`LoadedImage.pixels`: show ``lo`` as black and ``hi`` as white."""

    name: str
    lo: float
    hi: float


@dataclass(frozen=True)
class LoadedImage:
    """A radiograph ready for the model.

    Attributes:
        pixels: (H, W) float32 in [0, 1], 1 = bright (MONOCHROME1 already inverted,
            Modality/VOI LUT applied for DICOM).
        source: the file it came from (None for in-memory arrays).
        frame: 0-based frame of a multi-frame DICOM, else None.
        kind: the file format.
        meta: DICOM header values (patient/study/series/instance ids, modality, ...),
            strings only; empty for PNG/JPEG.
        value_range: the stored (Modality LUT) values that pixels 0 and 1 stand for, when
            no VOI was applied (``raw = v0 + p * (v1 - v0)``; v0 > v1 for MONOCHROME1);
            None when the pixels went through a VOI transform or have no such units.
        windows: the header's display windows (every Window Center/Width pair and VOI
            LUT), for images loaded with ``apply_voi=False``.
        model_pixels: (H, W) float32 in [0, 1], the model's input (VOI applied) of an image
            loaded for display with ``model_input=True``, when it differs from ``pixels``;
            None otherwise. :meth:`for_model` picks it.
    """

    pixels: np.ndarray
    source: Path | None = None
    frame: int | None = None
    kind: Literal["dicom", "png", "jpeg", "array"] = "array"
    meta: dict[str, str] = field(default_factory=dict)
    value_range: tuple[float, float] | None = None
    windows: tuple[DisplayWindow, ...] = ()
    model_pixels: np.ndarray | None = None

    def for_model(self) -> "LoadedImage":
        """This image as the model reads it (the CLI's ``apply_voi=True`` load), without
        decoding the file again: the kept VOI-applied pixels, or this image when its
        pixels already are the model's input."""
        if self.model_pixels is None:
            # No VOI to apply (or a broken one the model also goes without): the same pixels;
            # the header's windows are the viewer's business.
            return replace(self, windows=()) if self.windows else self
        return replace(self, pixels=self.model_pixels, model_pixels=None, value_range=None, windows=())

    def raw_value(self, p: float) -> float | None:
        """The stored (Modality LUT) value of pixel value ``p``, or None without units."""
        if self.value_range is None:
            return None
        v0, v1 = self.value_range
        return v0 + p * (v1 - v0)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def name(self) -> str:
        if self.source is None:
            return "<array>"
        return f"{self.source}" + (f"#frame{self.frame}" if self.frame is not None else "")


@dataclass(frozen=True)
class Window:
    """One proposed part window: xyxy original pixels, its score (mean of A_o), 1-based scale."""

    box: BoxXYXY
    score: float
    scale: int


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the model that made a prediction."""

    sha256: str
    backbone: str
    input_size: int
    name: str = "MSFM"


@dataclass(frozen=True)
class StageMaps:
    """Grid-resolution maps for overlays, float32.

    ``a``, ``fw``, ``cam`` (g, g) of the main stage on the whole image (cell (i, j) covers
    original pixels ``[j*W/g, (j+1)*W/g) x [i*H/g, (i+1)*H/g)``); ``cfm`` (K, g, g) per
    class; ``cam`` is ``cfm[abnormal]``; ``a_object`` (g, g) covers ``object_box``.

    ``evidence`` is the evidence map E of SPEC §3b (:mod:`engine.evidence`), (He, We) with
    ``He = ceil(H/4)``, ``We = ceil(W/4)``, in logit units, over the **whole** original
    image: cell (i, j) covers original pixels ``[j*W/We, (j+1)*W/We) x [i*H/He, (i+1)*H/He)``.
    None for a prediction made without it (older code paths).
    """

    a: np.ndarray
    cfm: np.ndarray
    cam: np.ndarray
    fw: np.ndarray
    a_object: np.ndarray
    evidence: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """MSFM's findings for one image (SPEC §5 JSON via :meth:`to_json`).

    ``windows`` are sorted by decreasing score (rank 1 first). ``probability`` is the
    ensemble abnormal probability; ``stages`` has main/object/parts.
    ``outside_intended_use`` is None for an image the model is meant to read; for one that
    was analysed anyway under the research override (``Predictor(enforce_scope=False)``)
    it is the reason it is out of scope (:func:`engine.scope.check_scope`), and every
    output of the prediction must carry that mark.

    The finding (SPEC §3b, :mod:`engine.evidence`): ``peak`` is (x, y) original pixels of
    the centre of the evidence map's highest cell; ``lesion_box`` is xyxy original pixels
    (continuous cell edges) of the 8-connected region of ``E >= tau * E(peak)`` holding the
    peak (tau = ``ModelConfig.lesion_tau``; for ``E(peak) <= 0`` see
    :func:`engine.evidence.lesion_threshold`); ``evidence_max`` is ``E(peak)`` in logit
    units. The eq. 11 ``fused_box`` is the region around it. All three are None when the
    prediction has no evidence map.
    """

    file: str
    width: int
    height: int
    probability: float
    label: int
    stages: dict[str, float]
    part_probabilities: tuple[float, ...]
    object_box: BoxXYXY
    object_box_is_default: bool
    windows: list[Window]
    fused_box: BoxXYXY
    maps: StageMaps
    model: ModelInfo
    frame: int | None = None
    meta: dict[str, str] = field(default_factory=dict)
    outside_intended_use: str | None = None
    peak: tuple[float, float] | None = None
    lesion_box: BoxXYXY | None = None
    evidence_max: float | None = None
    #: The decision threshold on p(abnormal) that ``label`` was made at (CSV, reports).
    threshold: float | None = None
    #: Evidence beyond MSFM's own (another localisation method's maps, boxes, points):
    #: drawn and exported after MSFM's layers by every output (:mod:`engine.layers`).
    extra_layers: tuple[Layer, ...] = ()

    def evidence_layers(self) -> tuple[Layer, ...]:
        """Everything this prediction shows, bottom to top (:mod:`engine.layers`): MSFM's
        maps and boxes from its fields, then ``extra_layers``."""
        return msfm_layers(self) + self.extra_layers

    def to_json(self) -> dict[str, Any]:
        r = lambda v: round(float(v), 6)  # noqa: E731
        box = lambda b: [round(float(v), 2) for v in b]  # noqa: E731
        out: dict[str, Any] = {
            "file": self.file,
            "width": self.width,
            "height": self.height,
            "probability": r(self.probability),
            "label": int(self.label),
            "stages": {k: r(v) for k, v in self.stages.items()},
            "object_box": box(self.object_box),
            "windows": [{"box": box(w.box), "score": r(w.score), "scale": w.scale} for w in self.windows],
            "fused_box": box(self.fused_box),
            "model": {"sha256": self.model.sha256, "backbone": self.model.backbone, "input_size": self.model.input_size},
        }
        if self.peak is not None:
            out["peak"] = box(self.peak)
        if self.lesion_box is not None:
            out["lesion_box"] = box(self.lesion_box)
        if self.evidence_max is not None and np.isfinite(self.evidence_max):
            out["evidence"] = {"max": r(self.evidence_max)}
        if self.frame is not None:
            out["frame"] = self.frame
        if self.meta.get("SOPInstanceUID"):
            out["sop_instance_uid"] = self.meta["SOPInstanceUID"]
        if self.outside_intended_use is not None:
            out["outside_intended_use"] = self.outside_intended_use
            out["research_use_only"] = True
        return out


def grid_peak_to_pixels(m: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """(x, y) original pixels of the centre of the highest cell of a (g, g) map over the whole image."""
    gh, gw = m.shape
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    return ((j + 0.5) * width / gw, (i + 0.5) * height / gh)
