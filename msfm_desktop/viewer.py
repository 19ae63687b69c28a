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

AUTO, FULL, MANUAL = "Auto (histogram)", "Full range", "Manual (dragged)"
PRESETS = (AUTO, FULL)  # after the header's own windows
#: CT windows in Hounsfield units (centre, width): offered when the image is CT with HU.
CT_PRESETS = {"CT soft tissue (L 40 / W 400)": (40.0, 400.0), "CT bone (L 500 / W 2000)": (500.0, 2000.0),
              "CT lung (L -600 / W 1500)": (-600.0, 1500.0), "CT brain (L 40 / W 80)": (40.0, 80.0)}
ZOOM_STEP = 1.25


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
        self.preset.setToolTip("Display window: the DICOM header's own windows (the first is what the model sees), "
                               "Auto (histogram), Full range; right-drag on the image sets it by hand")
        self.fit_button, self.one_button, self.invert_button = QPushButton("Fit"), QPushButton("1:1"), QPushButton("Invert")
        self.fit_button.setToolTip("Fit the whole image in the view (F)")
        self.one_button.setToolTip("One screen pixel per image pixel (1)")
        self.invert_button.setToolTip("Invert grey levels for display only (I)")
        self.prev_frame, self.next_frame = QPushButton("◀"), QPushButton("▶")
        for b, tip in ((self.prev_frame, "Previous frame (Ctrl+Left)"), (self.next_frame, "Next frame (Ctrl+Right)")):
            b.setToolTip(tip)
            b.setMaximumWidth(32)
            b.setVisible(False)
        self.frame_label = QLabel("")
        self.frame_label.setToolTip("Frame of a multi-frame image: View ▸ Next/Previous frame (Ctrl+Right / Ctrl+Left)")
        # Shown instead of an image when there is none to show (nothing opened, a failed
        # open, an undecodable file): the reason, never the previous image.
        self.message = pg.TextItem("", color=(230, 230, 230), anchor=(0.5, 0.5))
        self.message.setZValue(50)
        self.view.addItem(self.message)
        self.invert_button.setCheckable(True)
        self.fit_button.clicked.connect(self.fit)
        self.one_button.clicked.connect(self.one_to_one)
        self.invert_button.toggled.connect(self.set_inverted)
        self.cursor_label, self.meta_label = QLabel(" "), QLabel(" ")
        self.meta_label.setTextFormat(Qt.TextFormat.PlainText)  # header text is data, never markup
        bar = QHBoxLayout()
        for w in (QLabel("Window:"), self.preset, self.fit_button, self.one_button, self.invert_button, self.prev_frame, self.frame_label, self.next_frame):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.cursor_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(self.meta_label)

    def clear(self, message: str = "") -> None:
        """Show no image, only ``message`` (why there is none)."""
        self.image = None
        self.item.clear()
        self.meta_label.setText(" ")
        self.cursor_label.setText(" ")
        self.set_frame(None, 1)
        self.show_message(message)

    def set_frame(self, frame: int | None, frames: int) -> None:
        """The frame indicator: "Frame k / n" with its buttons for multi-frame images only."""
        multi = frames > 1
        self.frame_label.setText(f"Frame {(frame or 0) + 1} / {frames}" if multi else "")
        self.prev_frame.setVisible(multi)
        self.next_frame.setVisible(multi)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))
        if text:
            self.message.setPos(0, 0)
            self.view.setRange(xRange=(-1, 1), yRange=(-1, 1), padding=0)

    def message_text(self) -> str:
        return self.message.textItem.toPlainText() if self.message.isVisible() else ""

    def ct_presets(self, image: LoadedImage) -> list[str]:
        """CT windows in HU, offered for CT images whose pixels carry HU (value_range)."""
        if image.meta.get("Modality") != "CT" or image.value_range is None:
            return []
        return list(CT_PRESETS)

    def set_image(self, image: LoadedImage) -> None:
        self.show_message("")
        self.image = image
        self.item.setImage(image.pixels, autoLevels=False)
        keep = self.preset.currentText()
        self.preset.blockSignals(True)
        self.preset.clear()
        ct = self.ct_presets(image)
        self.preset.addItems([f"Header: {w.name}" for w in image.windows] + ct + list(PRESETS))
        # The header's first window is the reading default; a generic choice carries over;
        # an image without header windows starts as stored (full range).
        # A DICOM without header windows (MR, some CT) is rarely readable at full range.
        fallback = AUTO if image.kind == "dicom" else keep if keep in PRESETS else FULL
        self.preset.setCurrentIndex(0 if (image.windows or ct) else self.preset.findText(fallback))
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
        if self.image is None or not name or name == MANUAL:
            return
        if self.preset.findText(MANUAL) >= 0 and name != MANUAL:
            self.preset.blockSignals(True)
            self.preset.removeItem(self.preset.findText(MANUAL))
            self.preset.setCurrentText(name)
            self.preset.blockSignals(False)
        for w in self.image.windows:
            if name == f"Header: {w.name}":
                self.set_levels(w.lo, w.hi)
                return
        if name in CT_PRESETS and self.image.value_range is not None:
            centre, width = CT_PRESETS[name]
            v0, v1 = self.image.value_range  # HU of pixel values 0 and 1
            to_px = lambda hu: (hu - v0) / (v1 - v0)  # noqa: E731
            self.set_levels(to_px(centre - width / 2), to_px(centre + width / 2))
            return
        self.set_levels(*(auto_levels(self.image.pixels) if name == AUTO else (0.0, 1.0)))

    def _drag_window(self, d_level: float, d_width: float) -> None:
        lo, hi = self.levels
        level, width = (lo + hi) / 2 + d_level, max(1e-3, (hi - lo) + d_width)
        self.set_levels(level - width / 2, level + width / 2)
        # The box must not keep naming a preset the image no longer shows.
        if self.preset.currentText() != MANUAL:
            self.preset.blockSignals(True)
            if self.preset.findText(MANUAL) < 0:
                self.preset.addItem(MANUAL)
            self.preset.setCurrentText(MANUAL)
            self.preset.blockSignals(False)

    def zoom(self, factor: float) -> None:
        """Zoom in (factor > 1) or out about the view centre (keyboard + / -)."""
        if self.image is not None:
            self.view.scaleBy((1 / factor, 1 / factor))

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
