"""Evidence overlays drawn in the viewer's scene, i.e. in original image pixels.

Boxes are ``QGraphicsRectItem`` s in the ViewBox, so zoom, pan and window/level never move
them off the anatomy: the object box (cyan), the part windows in rank colours (red,
orange, yellow, green, …) and the fused box (white). The abnormal-class CAM is a
semi-transparent colour-mapped image stretched over the whole radiograph (its (g, g)
cells cover the image as :class:`engine.types.StageMaps` says).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsSimpleTextItem

from engine.types import Prediction

RANK_COLOURS = ("#ff0000", "#ff8000", "#ffff00", "#00c000", "#00c0ff", "#0040ff", "#c000ff")
LAYERS = ("cam", "object", "windows", "fused")


def _rect(box, colour: str, width: float = 2.0) -> QGraphicsRectItem:
    x0, y0, x1, y1 = box
    item = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
    pen = QPen(QColor(colour))
    pen.setCosmetic(True)  # constant screen width at any zoom
    pen.setWidthF(width)
    item.setPen(pen)
    return item


class Overlays:
    """The overlay items of one prediction inside ``view``; each layer toggles on its own."""

    def __init__(self, view: pg.ViewBox) -> None:
        self.view = view
        self.items: dict[str, list] = {k: [] for k in LAYERS}
        self.visible = {k: True for k in LAYERS}
        self.opacity = 0.45

    def clear(self) -> None:
        for items in self.items.values():
            for it in items:
                self.view.removeItem(it)
            items.clear()

    def show(self, p: Prediction) -> None:
        self.clear()
        cam = pg.ImageItem(p.maps.cam, axisOrder="row-major")
        cam.setLookupTable(pg.colormap.get("turbo").getLookupTable(nPts=256))
        cam.setRect(QRectF(0, 0, p.width, p.height))
        cam.setOpacity(self.opacity)
        cam.setZValue(5)
        self.items["cam"].append(cam)
        self.items["object"].append(_rect(p.object_box, "#00ffff"))
        for rank, w in enumerate(p.windows):
            r = _rect(w.box, RANK_COLOURS[rank % len(RANK_COLOURS)], 1.5)
            label = QGraphicsSimpleTextItem(f"{rank + 1}: {w.score:.2f}", r)
            label.setBrush(QColor(RANK_COLOURS[rank % len(RANK_COLOURS)]))
            label.setPos(w.box[0] + 2, w.box[1] + 2)
            label.setFlag(label.GraphicsItemFlag.ItemIgnoresTransformations)
            self.items["windows"].append(r)
        self.items["fused"].append(_rect(p.fused_box, "#ffffff", 3.0))
        for layer, items in self.items.items():
            for it in items:
                if layer != "cam":
                    it.setZValue(10)
                self.view.addItem(it)
                it.setVisible(self.visible[layer])

    def set_visible(self, layer: str, on: bool) -> None:
        self.visible[layer] = bool(on)
        for it in self.items[layer]:
            it.setVisible(bool(on))

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        for it in self.items["cam"]:
            it.setOpacity(self.opacity)

    def boxes(self, layer: str) -> list[tuple[float, float, float, float]]:
        """xyxy scene (= image pixel) coordinates of a box layer's rectangles."""
        out = []
        for it in self.items[layer]:
            r = it.rect()
            out.append((r.left(), r.top(), r.right(), r.bottom()))
        return out
