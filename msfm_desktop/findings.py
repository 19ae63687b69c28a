"""The Findings panel: the model's verdict on the shown image, map opacity, colour bar, legend."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from engine.types import Prediction

from .overlays import map_lut

NOT_ANALYSED = "Not analysed. Analyse ▸ Analyse image (Ctrl+R)."
LEGEND = ("<span style='color:#00c0c0'>■</span> object box &nbsp; windows by rank: "
          "<span style='color:#ff0000'>■</span>1 <span style='color:#ff8000'>■</span>2 "
          "<span style='color:#d0d000'>■</span>3 <span style='color:#00c000'>■</span>4 … &nbsp; □ fused box (white)")


def colour_bar_pixmap(width: int = 220, height: int = 14) -> QPixmap:
    """The map colour table as a horizontal bar, composited over mid grey so the
    transparent low end reads as 'no tint'."""
    lut = map_lut(width).astype(np.float32)
    alpha = lut[:, 3:4] / 255.0
    rgb = (lut[:, :3] * alpha + 128.0 * (1.0 - alpha)).astype(np.uint8)
    bar = np.ascontiguousarray(np.repeat(rgb[None], height, axis=0))
    image = QImage(bar.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive ``bar``


class FindingsPanel(QWidget):
    """``opacity`` (0–100) drives the map overlays; ``text`` holds the current findings."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = QLabel(NOT_ANALYSED)
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.colour_bar = QLabel()
        self.colour_bar.setPixmap(colour_bar_pixmap())
        ends = QHBoxLayout()
        ends.addWidget(QLabel("low"))
        ends.addStretch(1)
        ends.addWidget(QLabel("high (this image's maximum)"))
        lay = QVBoxLayout(self)
        for w in (self.text, QLabel("Map opacity (CAM, A)"), self.opacity, QLabel("Map colours"), self.colour_bar):
            lay.addWidget(w)
        lay.addLayout(ends)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        lay.addWidget(legend)
        lay.addStretch(1)

    def reset(self) -> None:
        self.text.setText(NOT_ANALYSED)

    def show_prediction(self, p: Prediction, device: str = "", threshold: float | None = None) -> None:
        verdict = "ABNORMAL" if p.label else "normal"
        at = f"the model's threshold {threshold:.3f}" if threshold is not None else "the model's threshold"
        stages = ", ".join(f"{k} {v:.3f}" for k, v in p.stages.items())
        on = f", run on {device}" if device else ""
        self.text.setText(
            f"<b>{verdict}</b> at {at}<br>abnormal probability <b>{p.probability:.3f}</b> (ensemble)<br>"
            f"per stage: {stages}<br>"
            f"model {p.model.name} ({p.model.backbone}, {p.model.input_size} px){on}<br>"
            f"sha256 <tt>{p.model.sha256[:32]}<br>{p.model.sha256[32:]}</tt><br>"
            "<i>Decision support, not a diagnosis.</i>"
        )
