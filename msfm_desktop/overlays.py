"""Evidence overlays drawn in the viewer's scene, i.e. in original image pixels.

Boxes are ``QGraphicsRectItem`` s in the ViewBox, so zoom, pan and window/level never move
them off the anatomy: the object box (cyan), the part windows in rank colours (red,
orange, yellow, green, …) and the fused box (white). The two maps, the abnormal-class
CAM (class feature map) and the activation map A, are colour-mapped images stretched
over the whole radiograph (their (g, g) cells cover the image as
:class:`engine.types.StageMaps` says), upsampled bilinearly (cell centres stay put) so the
grid does not read as blocks. Each map is scaled to its own min..max on this image, and
its colour table is transparent below 35 % of that range and fades in up to 80 %, so only
the strongest evidence tints the radiograph.
"""

from __future__ import annotations

import pyqtgraph as pg
import cv2
import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

from engine.types import Prediction

RANK_COLOURS = ("#ff0000", "#ff8000", "#ffff00", "#00c000", "#00c0ff", "#0040ff", "#c000ff")
LAYERS = ("cam", "a", "object", "windows", "fused")
MAP_LAYERS = ("cam", "a")
COLOUR_MAP = "turbo"
#: Default visibility: the CAM and A share colours, so only one map is on at first.
DEFAULT_VISIBLE = {"cam": True, "a": False, "object": True, "windows": True, "fused": True}


MAP_UPSAMPLE = 16
ALPHA_FROM, ALPHA_FULL = 0.35, 0.80


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


def map_levels(m: np.ndarray) -> tuple[float, float]:
    lo, hi = float(m.min()), float(m.max())
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


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
        self.visible = dict(DEFAULT_VISIBLE)
        self.opacity = 0.6

    def clear(self) -> None:
        for items in self.items.values():
            for it in items:
                self.view.removeItem(it)
            items.clear()

    def show(self, p: Prediction) -> None:
        self.clear()
        for layer, m in (("cam", p.maps.cam), ("a", p.maps.a)):
            item = pg.ImageItem(display_map(m), axisOrder="row-major", levels=map_levels(m))
            item.setLookupTable(map_lut())
            item.setRect(QRectF(0, 0, p.width, p.height))
            item.setOpacity(self.opacity)
            item.setZValue(5)
            self.items[layer].append(item)
        self.items["object"].append(_rect(p.object_box, "#00ffff"))
        for rank, w in enumerate(p.windows):
            colour = RANK_COLOURS[rank % len(RANK_COLOURS)]
            r = _rect(w.box, colour, 1.5)
            # On a dark plate: legible over bright bone; fixed screen size at any zoom.
            label = pg.TextItem(f"{rank + 1}: {w.score:.3g}", color=colour, fill=(0, 0, 0, 170), anchor=(0, 0))
            label.setPos(w.box[0], w.box[1])
            self.items["windows"] += [r, label]
        self.items["fused"].append(_rect(p.fused_box, "#ffffff", 3.0))
        for layer, items in self.items.items():
            for it in items:
                if layer not in MAP_LAYERS:
                    it.setZValue(11 if isinstance(it, pg.TextItem) else 10)
                self.view.addItem(it)
                it.setVisible(self.visible[layer])

    def set_visible(self, layer: str, on: bool) -> None:
        self.visible[layer] = bool(on)
        for it in self.items[layer]:
            it.setVisible(bool(on))

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        for layer in MAP_LAYERS:
            for it in self.items[layer]:
                it.setOpacity(self.opacity)

    def boxes(self, layer: str) -> list[tuple[float, float, float, float]]:
        """xyxy scene (= image pixel) coordinates of a box layer's rectangles."""
        out = []
        for it in self.items[layer]:
            if isinstance(it, QGraphicsRectItem):
                r = it.rect()
                out.append((r.left(), r.top(), r.right(), r.bottom()))
        return out
