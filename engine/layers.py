"""Evidence layers: what a prediction shows, described once, drawn by every output.

A prediction carries its evidence as layers (:meth:`engine.types.Prediction.evidence_layers`):
heat maps (:class:`MapLayer`) and shapes (:class:`ShapeLayer`: boxes and points), each
with its name, its words, its pixel space and its style. The desktop viewer
(``msfm_desktop.overlays``), the burned-in Secondary Capture and the report
(:mod:`engine.exports.burn`), the GSPS (:func:`engine.exports.dicom_objects.presentation_state`)
and the CSV (:mod:`engine.exports.csvout`) draw or list whatever layers a prediction has,
so a localisation method that adds a layer adds it here (or in the prediction's
``extra_layers``) and every output shows it without being edited.

Pixel space: every coordinate is in pixels of the **original image** (the file as
loaded), x right, y down, continuous pixel edges; boxes are xyxy.

A shape layer's **role** decides how prominent it is wherever it is drawn
(:data:`ROLES`): ``finding`` (the lesion box: thickest, on top), ``region`` (the area
to look at), ``secondary`` (context the user may hide, drawn fainter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import style

if TYPE_CHECKING:
    from .types import Prediction

BoxXYXY = tuple[float, float, float, float]
Role = Literal["finding", "region", "secondary"]
#: Where a layer goes; a layer lists the outputs it belongs in.
Output = Literal["viewer", "burn", "gsps", "csv"]
ALL_OUTPUTS: frozenset[str] = frozenset({"viewer", "burn", "gsps", "csv"})


@dataclass(frozen=True)
class RoleStyle:
    """How a role is drawn: viewer line width (screen px; toned down for a normal result),
    burn-in thickness in units of the image's line unit, viewer stacking order, and the
    share of the box opacity it keeps."""

    line: float
    toned_line: float
    burn: int
    z: int
    share: float


ROLES: dict[str, RoleStyle] = {
    "secondary": RoleStyle(line=1.0, toned_line=1.0, burn=1, z=10, share=0.6),
    "region": RoleStyle(line=2.0, toned_line=1.0, burn=2, z=10, share=1.0),
    "finding": RoleStyle(line=3.5, toned_line=1.5, burn=2, z=13, share=1.0),
}
#: Order of roles from the bottom (drawn first) to the top.
ROLE_ORDER: tuple[str, ...] = ("secondary", "region", "finding")


@dataclass(frozen=True)
class MapLayer:
    """A heat map: ``values`` (h, w) float32 over ``extent`` (xyxy original pixels), cell
    (i, j) covering ``[x0 + j*(x1-x0)/w, x0 + (j+1)*(x1-x0)/w) x [y0 + i*(y1-y0)/h, ...)``;
    drawn with the turbo colour map on the model's fixed scale for ``name`` when it has one
    (:attr:`engine.model.calibration.Calibration.map_scale`). One map is shown at a time."""

    name: str
    label: str
    values: np.ndarray
    extent: BoxXYXY
    default_visible: bool = False
    outputs: frozenset[str] = frozenset({"viewer", "burn"})


@dataclass(frozen=True)
class ShapeLayer:
    """Boxes (xyxy original pixels) and points ((x, y) original pixels) drawn in ``colour``
    (or ``box_colours``, one per box). ``numbered`` boxes get their 1-based rank in the
    viewer; ``csv_box`` / ``csv_point`` name the CSV columns of the first box / point
    (``<csv_box>_x0`` ... ``_y1``, ``<csv_point>_x``, ``_y``); ``description`` says what it
    is in exports (GSPS layer description, CSV column meaning)."""

    name: str
    label: str
    role: Role
    colour: str
    boxes: tuple[BoxXYXY, ...] = ()
    points: tuple[tuple[float, float], ...] = ()
    box_colours: tuple[str, ...] = ()
    numbered: bool = False
    description: str = ""
    csv_box: str | None = None
    csv_point: str | None = None
    default_visible: bool = True
    outputs: frozenset[str] = ALL_OUTPUTS

    def colour_of(self, i: int) -> str:
        """The colour of box ``i``."""
        return self.box_colours[i] if i < len(self.box_colours) else self.colour

    @property
    def style(self) -> RoleStyle:
        return ROLES[self.role]


Layer = MapLayer | ShapeLayer


def msfm_layers(p: "Prediction") -> tuple[Layer, ...]:
    """MSFM's own evidence of ``p``, bottom to top: the maps (evidence map E, the
    abnormal-class CAM, activation map A, each over the whole image), the stage-1 object
    box, the ranked part windows, the region (eq. 11 fused box) and the finding (lesion
    box and evidence peak, when the prediction has an evidence map)."""
    whole: BoxXYXY = (0.0, 0.0, float(p.width), float(p.height))
    out: list[Layer] = []
    for name, values in (("evidence", p.maps.evidence), ("cam", p.maps.cam), ("a", p.maps.a)):
        if values is not None:
            out.append(MapLayer(name, style.LAYER_LABELS[name], values, whole, default_visible=name == "evidence"))
    out.append(ShapeLayer("object", style.LAYER_LABELS["object"], "secondary", style.OBJECT_COLOUR, (p.object_box,),
                          description="look-closer crop box", csv_box="object", outputs=frozenset({"viewer", "burn", "csv"})))
    out.append(ShapeLayer("windows", style.LAYER_LABELS["windows"], "secondary", style.RANK_COLOURS[0], tuple(w.box for w in p.windows),
                          box_colours=tuple(style.rank_colour(i) for i in range(len(p.windows))), numbered=True,
                          description="part windows, rank order", outputs=frozenset({"viewer", "burn", "gsps"})))
    out.append(ShapeLayer("fused", style.LAYER_LABELS["fused"], "region", style.FUSED_COLOUR, (p.fused_box,),
                          description="region (fused box)", csv_box="fused"))
    if p.lesion_box is not None:
        out.append(ShapeLayer("lesion", style.LAYER_LABELS["lesion"], "finding", style.LESION_COLOUR, (p.lesion_box,),
                              points=(p.peak,) if p.peak is not None else (), description="lesion box and evidence peak",
                              csv_box="lesion", csv_point="peak"))
    return tuple(out)


def finding_box(layers: tuple[Layer, ...]) -> BoxXYXY | None:
    """The box a reader should look at first: the finding's, else the region's."""
    for role in ("finding", "region"):
        for layer in layers:
            if isinstance(layer, ShapeLayer) and layer.role == role and layer.boxes:
                return layer.boxes[0]
    return None


def drawing_order(layers: tuple[Layer, ...]) -> list[ShapeLayer]:
    """The shape layers bottom to top: by role, then in the prediction's order."""
    shapes = [layer for layer in layers if isinstance(layer, ShapeLayer)]
    return sorted(shapes, key=lambda layer: ROLE_ORDER.index(layer.role))


__all__ = ["ALL_OUTPUTS", "BoxXYXY", "Layer", "MapLayer", "ROLES", "ROLE_ORDER", "RoleStyle", "ShapeLayer", "drawing_order", "finding_box",
           "msfm_layers"]
