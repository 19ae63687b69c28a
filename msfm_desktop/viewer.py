"""The radiograph viewer: pyqtgraph, row-major, zoom/pan/fit/1:1, invert, window/level.

Pixels arrive as the engine loads them for display (``apply_voi=False``): (H, W) float32
in [0, 1] with the DICOM Modality LUT applied and MONOCHROME1 already inverted, so 1 is
always bright. Display window/level act on that [0, 1] range: the presets are every
window of the DICOM header (VOI LUT module; the first is the default and matches what the
model sees), "Auto" clips the histogram's 0.5/99.5 percentiles, "Full range" shows
(0, 1), and a right-button drag changes level (vertical) and width (horizontal). The
cursor reads the stored value (Modality LUT units) where the file has them. Scene coordinates are original image pixels, which is
what keeps overlays aligned under zoom, pan and window/level.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.types import LoadedImage

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

AUTO, FULL = "Auto (histogram)", "Full range"
PRESETS = (AUTO, FULL)  # after the header's own windows


def auto_levels(pixels: np.ndarray) -> tuple[float, float]:
    """0.5 / 99.5 percentiles of the pixels (a flat image gets (v, v + 1e-3))."""
    lo, hi = (float(v) for v in np.percentile(pixels, (0.5, 99.5)))
    return (lo, hi) if hi > lo else (lo, lo + 1e-3)


class WindowLevelViewBox(pg.ViewBox):
    """Left drag pans, wheel zooms (pyqtgraph defaults); right drag is window/level."""

    windowDragged = Signal(float, float)  # d_level, d_width in [0, 1] units

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (pyqtgraph naming)
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            d = ev.pos() - ev.lastPos()
            self.windowDragged.emit(-d.y() / 400.0, d.x() / 400.0)
            return
        super().mouseDragEvent(ev, axis)


class ImageViewer(QWidget):
    """Shows one :class:`LoadedImage`; ``cursorMoved`` reports (x, y, value) in image pixels."""

    cursorMoved = Signal(int, int, float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.image: LoadedImage | None = None
        self.inverted = False
        self.levels = (0.0, 1.0)
        self.view = WindowLevelViewBox(lockAspect=True, invertY=True)
        self.view.setMenuEnabled(False)
        self.graphics = pg.GraphicsView()
        self.graphics.setCentralItem(self.view)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.view.windowDragged.connect(self._drag_window)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)

        self.preset = QComboBox()
        self.preset.addItems(PRESETS)
        self.preset.setCurrentText(FULL)
        self.preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # header window names are long
        self.preset.currentTextChanged.connect(self.apply_preset)
        self.fit_button, self.one_button, self.invert_button = QPushButton("Fit"), QPushButton("1:1"), QPushButton("Invert")
        self.invert_button.setCheckable(True)
        self.fit_button.clicked.connect(self.fit)
        self.one_button.clicked.connect(self.one_to_one)
        self.invert_button.toggled.connect(self.set_inverted)
        self.cursor_label, self.meta_label = QLabel(" "), QLabel(" ")
        self.meta_label.setTextFormat(Qt.TextFormat.PlainText)  # header text is data, never markup
        bar = QHBoxLayout()
        for w in (QLabel("Window:"), self.preset, self.fit_button, self.one_button, self.invert_button):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.cursor_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(self.meta_label)

    def set_image(self, image: LoadedImage) -> None:
        self.image = image
        self.item.setImage(image.pixels, autoLevels=False)
        keep = self.preset.currentText()
        self.preset.blockSignals(True)
        self.preset.clear()
        self.preset.addItems([f"Header: {w.name}" for w in image.windows] + list(PRESETS))
        # The header's first window is the reading default; a generic choice carries over;
        # an image without header windows starts as stored (full range).
        self.preset.setCurrentIndex(0 if image.windows else self.preset.findText(keep if keep in PRESETS else FULL))
        self.preset.blockSignals(False)
        self.apply_preset(self.preset.currentText())
        m = image.meta
        parts = [m.get("PatientName", ""), m.get("PatientID", ""), m.get("StudyDate", ""), m.get("StudyDescription", ""), m.get("Modality", ""), m.get("BodyPartExamined", "")]
        where = image.source.name if image.source else "image"
        self.meta_label.setText(f"{where}  {image.width} × {image.height}  " + "  ".join(p for p in parts if p))
        self.fit()

    def set_levels(self, lo: float, hi: float) -> None:
        self.levels = (float(lo), float(max(hi, lo + 1e-4)))
        self.item.setLevels(self.levels)

    def apply_preset(self, name: str) -> None:
        if self.image is None or not name:
            return
        for w in self.image.windows:
            if name == f"Header: {w.name}":
                self.set_levels(w.lo, w.hi)
                return
        self.set_levels(*(auto_levels(self.image.pixels) if name == AUTO else (0.0, 1.0)))

    def _drag_window(self, d_level: float, d_width: float) -> None:
        lo, hi = self.levels
        level, width = (lo + hi) / 2 + d_level, max(1e-3, (hi - lo) + d_width)
        self.set_levels(level - width / 2, level + width / 2)

    def set_inverted(self, on: bool) -> None:
        self.inverted = bool(on)
        ramp = np.arange(256, dtype=np.uint8)
        self.item.setLookupTable(ramp[::-1].copy() if self.inverted else None)
        if self.invert_button.isChecked() != self.inverted:
            self.invert_button.setChecked(self.inverted)

    def fit(self) -> None:
        if self.image is not None:
            self.view.setRange(xRange=(0, self.image.width), yRange=(0, self.image.height), padding=0.02)

    def one_to_one(self) -> None:
        """One screen pixel per image pixel, centred where the view is now."""
        if self.image is None:
            return
        w, h = self.view.width(), self.view.height()
        c = self.view.viewRect().center()
        self.view.setRange(xRange=(c.x() - w / 2, c.x() + w / 2), yRange=(c.y() - h / 2, c.y() + h / 2), padding=0)

    def pixel_at(self, x: float, y: float) -> tuple[int, int, float] | None:
        """(column, row, value) of the image pixel at scene-view coordinates, or None outside."""
        if self.image is None:
            return None
        col, row = int(np.floor(x)), int(np.floor(y))
        if 0 <= col < self.image.width and 0 <= row < self.image.height:
            return col, row, float(self.image.pixels[row, col])
        return None

    def _mouse_moved(self, pos) -> None:
        p = self.view.mapSceneToView(pos)
        hit = self.pixel_at(p.x(), p.y())
        if hit is None:
            self.cursor_label.setText(" ")
            return
        raw = self.image.raw_value(hit[2]) if self.image is not None else None
        value = f"value {raw:.6g}" if raw is not None else f"value {hit[2]:.3f}"
        self.cursor_label.setText(f"x {hit[0]}  y {hit[1]}  {value}")
        self.cursorMoved.emit(*hit)
