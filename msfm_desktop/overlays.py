"""Evidence overlays drawn in the viewer's scene, i.e. in original image pixels.

The viewer draws whatever evidence layers a prediction has (:mod:`engine.layers`), with
the layer's colours and its role's prominence. Boxes are ``QGraphicsRectItem`` s in the
ViewBox, so zoom, pan and window/level never move them off the anatomy: for MSFM the
object box (cyan), the part windows in rank colours (red, orange, yellow, green, …), the
fused box (white) and the lesion box with its peak (magenta). The maps (evidence map E,
the abnormal-class CAM, activation map A) are colour-mapped images stretched over their
extent (for MSFM the whole radiograph, as :class:`engine.types.StageMaps` says), upsampled bilinearly (cell centres stay put) so the
grid does not read as blocks. Each map is drawn on the model's fixed scale (its
checkpoint's validation-calibrated ``map_scale``), so a weak map stays weak instead of
being stretched to full colour; a model without one falls back to this image's min..max
and the Findings panel says so. The colour table is transparent below 35 % of the scale
and fades in up to 80 %.

How strongly the evidence is drawn follows the verdict: solid boxes for an abnormal
result, dashed for borderline, dotted for "possible" (flagged only at the sensitive
operating point), and toned down (faint maps, thin grey dashed boxes) for a normal one.
Part-window labels are short rank numbers, moved apart when they would overlap.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from engine.layers import MapLayer, drawing_order
from engine.style import ALPHA_FROM, ALPHA_FULL, COLOUR_MAP, MAP_LAYERS, TONED_DOWN, TRUTH_COLOUR
from engine.types import Prediction

LAYERS = ("evidence", "cam", "a", "object", "windows", "fused", "lesion", "truth")
#: Default visibility: the maps share colours, so only one is on at first: the evidence
#: map E. The lesion box with its peak is the finding; the fused box (the region), the
#: object box and the windows are secondary layers a user can hide.
DEFAULT_VISIBLE = {"evidence": True, "cam": False, "a": False, "object": True, "windows": True, "fused": True, "lesion": True, "truth": True}
MAP_UPSAMPLE = 16


def map_lut(n: int = 256) -> np.ndarray:
    """(n, 4) uint8 RGBA colour table: turbo colours; alpha 0 below ``ALPHA_FROM`` of the
    range, rising linearly to 255 at ``ALPHA_FULL``, so weak activation leaves the
    radiograph untinted."""
    lut = pg.colormap.get(COLOUR_MAP).getLookupTable(nPts=n, alpha=True)
    t = np.linspace(0.0, 1.0, n)
    lut[:, 3] = (255 * np.clip((t - ALPHA_FROM) / (ALPHA_FULL - ALPHA_FROM), 0.0, 1.0)).astype(np.uint8)
    return lut


def display_map(m: np.ndarray) -> np.ndarray:
    """A (g, g) map upsampled ``MAP_UPSAMPLE`` times bilinearly for display (float32)."""
    g_h, g_w = m.shape
    return cv2.resize(np.ascontiguousarray(m, dtype=np.float32), (g_w * MAP_UPSAMPLE, g_h * MAP_UPSAMPLE), interpolation=cv2.INTER_LINEAR)


def map_levels(m: np.ndarray, scale: tuple[float, float] | None = None) -> tuple[float, float]:
    """The value range a map is coloured over: the model's fixed ``scale`` when it has
    one, else this map's own min..max."""
    lo, hi = (float(scale[0]), float(scale[1])) if scale is not None else (float(m.min()), float(m.max()))
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


#: How each verdict draws its evidence: (box line style, box opacity, map opacity factor).
STYLES = {
    "abnormal": (Qt.PenStyle.SolidLine, 1.0, 1.0),
    "borderline": (Qt.PenStyle.DashLine, 1.0, 0.8),
    "possible": (Qt.PenStyle.DotLine, 0.9, 0.6),
    "normal": (Qt.PenStyle.DashLine, 0.45, 0.3),
}


def _rect(box, colour: str, width: float = 2.0, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QGraphicsRectItem:
    x0, y0, x1, y1 = box
    item = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
    pen = QPen(QColor(colour))
    pen.setCosmetic(True)  # constant screen width at any zoom
    pen.setWidthF(width)
    pen.setStyle(style)
    item.setPen(pen)
    return item


def label_positions(boxes, min_gap: float) -> list[tuple[float, float]]:
    """Top-left anchors for one label per box, each moved down until it is at least
    ``min_gap`` image pixels from every earlier label (labels have a fixed screen size,
    so boxes sharing a corner would stack them unreadably)."""
    placed: list[tuple[float, float]] = []
    for x0, y0, _x1, _y1 in boxes:
        x, y = float(x0), float(y0)
        while any(abs(x - px) < 2 * min_gap and abs(y - py) < min_gap for px, py in placed):
            y += min_gap
        placed.append((x, y))
    return placed


class Overlays:
    """The overlay items of one prediction inside ``view``; each layer toggles on its own."""

    def __init__(self, view: pg.ViewBox) -> None:
        self.view = view
        self.items: dict[str, list] = {k: [] for k in LAYERS}  # and any layer a prediction brings
        self.visible = dict(DEFAULT_VISIBLE)
        self.maps: set[str] = set(MAP_LAYERS)  # the heat-map layers (opacity follows the slider)
        self.opacity = 0.6
        self.map_factor = 1.0  # the verdict's share of the user's opacity (toned down when normal)

    def clear(self) -> None:
        for items in self.items.values():
            for it in items:
                self.view.removeItem(it)
            items.clear()

    def show(self, p: Prediction, verdict: str = "abnormal", map_scale: dict | None = None, truth=()) -> None:
        """Draw ``p``'s evidence layers (:meth:`engine.types.Prediction.evidence_layers`:
        maps over their extent, boxes and points by role). ``verdict`` (abnormal | borderline
        | possible | normal) sets how strongly (:data:`STYLES`); ``map_scale`` ({"evidence":
        (lo, hi), ...}) is the model's fixed map scale, None for this image's own range;
        ``truth`` are reference boxes (xyxy image pixels) from the folder's boxes.csv."""
        self.clear()
        for box in truth:
            self.items["truth"].append(_rect(box, TRUTH_COLOUR, 2.0, Qt.PenStyle.DashLine))
        style, box_alpha, self.map_factor = STYLES.get(verdict, STYLES["abnormal"])
        toned = verdict == "normal"
        layers = [layer for layer in p.evidence_layers() if "viewer" in layer.outputs]
        for layer in layers:
            self.items.setdefault(layer.name, [])
            self.visible.setdefault(layer.name, layer.default_visible)
        for m in (layer for layer in layers if isinstance(layer, MapLayer)):
            item = pg.ImageItem(display_map(m.values), axisOrder="row-major", levels=map_levels(m.values, (map_scale or {}).get(m.name)))
            item.setLookupTable(map_lut())
            x0, y0, x1, y1 = m.extent
            item.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            item.setOpacity(self.opacity * self.map_factor)
            item.setZValue(5)
            self.items[m.name].append(item)
            self.maps.add(m.name)
        gap = 0.045 * max(p.width, p.height)
        for layer in drawing_order(tuple(layers)):
            role = layer.style
            width = role.toned_line if toned else role.line
            drawn: list = [_rect(b, TONED_DOWN if toned else layer.colour_of(i), width, style) for i, b in enumerate(layer.boxes)]
            if layer.numbered:
                # A rank number on a dark plate: legible over bright bone, fixed screen size;
                # the scores are listed and explained in the Findings panel.
                for i, pos in enumerate(label_positions(layer.boxes, gap)):
                    label = pg.TextItem(f"{i + 1}", color=TONED_DOWN if toned else layer.colour_of(i), fill=(0, 0, 0, 170), anchor=(0, 0))
                    label.setPos(*pos)
                    drawn.insert(2 * i + 1, label)
            colour = TONED_DOWN if toned else layer.colour
            drawn += [pg.ScatterPlotItem([x], [y], symbol="+", size=18, pen=pg.mkPen(colour, width=2), brush=None, pxMode=True) for x, y in layer.points]
            for it in drawn:
                it.setZValue(role.z + (1 if isinstance(it, pg.TextItem) else 0))
                it.setOpacity(box_alpha * role.share)
            self.items[layer.name] += drawn
        for it in self.items["truth"]:
            it.setZValue(12)  # the reference is data, not the model's evidence: never toned down
        for layer, items in self.items.items():
            for it in items:
                self.view.addItem(it)
                it.setVisible(self.visible[layer])

    def set_visible(self, layer: str, on: bool) -> None:
        self.visible[layer] = bool(on)
        for it in self.items[layer]:
            it.setVisible(bool(on))

    def visible_layers(self) -> tuple[str, ...]:
        """The layers switched on now, in :data:`LAYERS` order, then any a prediction
        brought (an export burns these in)."""
        return tuple(k for k in (*LAYERS, *(k for k in self.items if k not in LAYERS)) if self.visible.get(k))

    def drawn(self) -> bool:
        """Whether a prediction's evidence is on the viewer now."""
        return any(items for layer, items in self.items.items() if layer != "truth")

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        for layer in self.maps:
            for it in self.items[layer]:
                it.setOpacity(self.opacity * self.map_factor)

    def boxes(self, layer: str) -> list[tuple[float, float, float, float]]:
        """xyxy scene (= image pixel) coordinates of a box layer's rectangles."""
        out = []
        for it in self.items[layer]:
            if isinstance(it, QGraphicsRectItem):
                r = it.rect()
                out.append((r.left(), r.top(), r.right(), r.bottom()))
        return out
