"""The Findings panel: the model's verdict on the shown image, the CAM opacity and a legend."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSlider, QVBoxLayout, QWidget

from engine.types import Prediction

NOT_ANALYSED = "Not analysed. View ▸ Analyse (Ctrl+R)."
LEGEND = ("<span style='color:#00c0c0'>■</span> object box &nbsp; windows by rank: "
          "<span style='color:#ff0000'>■</span>1 <span style='color:#ff8000'>■</span>2 "
          "<span style='color:#d0d000'>■</span>3 <span style='color:#00c000'>■</span>4 … &nbsp; □ fused box (white)")


class FindingsPanel(QWidget):
    """``opacity`` (0–100) drives the CAM overlay; ``text`` holds the current findings."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.text = QLabel(NOT_ANALYSED)
        self.text.setWordWrap(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        lay = QVBoxLayout(self)
        for w in (self.text, QLabel("CAM opacity"), self.opacity, QLabel(LEGEND)):
            lay.addWidget(w)
        lay.addStretch(1)

    def reset(self) -> None:
        self.text.setText(NOT_ANALYSED)

    def show_prediction(self, p: Prediction) -> None:
        verdict = "ABNORMAL" if p.label else "normal"
        stages = ", ".join(f"{k} {v:.2f}" for k, v in p.stages.items())
        self.text.setText(
            f"<b>{verdict}</b> — abnormal probability {p.probability:.3f}<br>stages: {stages}<br>"
            f"model {p.model.backbone}, sha256 {p.model.sha256[:12]}<br>"
            "<i>Decision support, not a diagnosis.</i>"
        )
