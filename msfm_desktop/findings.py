"""The Findings panel: whose image it is, the model's verdict on it, the operating points
that verdict rests on, the model's known miss rate, map opacity, colour bar and legend.

Every state names the patient, study and image it belongs to (or says that nothing is
shown and why), so a finding can never be read against the wrong image.
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QSlider, QVBoxLayout, QWidget

from engine.style import LESION_COLOUR, OBJECT_COLOUR, VERDICT_COLOURS, rank_colour
from engine.types import Prediction

from .overlays import map_lut
from .session import ImageRef

NOT_ANALYSED = "Not analysed. Analyse ▸ Analyse image (Ctrl+R)."
NOTHING_OPEN = "No image shown."
DISCLAIMER = "Decision support, not a diagnosis."
OUTSIDE = "outside the model's intended use"


def _swatch(colour: str, text: str = "■") -> str:
    return f"<span style='color:{colour}'>{text}</span>"


LEGEND = (f"{_swatch(LESION_COLOUR, '■ +')} lesion box and evidence peak (the finding) &nbsp; □ region (fused box, white)<br>"
          f"{_swatch(OBJECT_COLOUR)} object box &nbsp; windows by rank: "
          + " ".join(f"{_swatch(rank_colour(r))}{r + 1}" for r in range(4)) + " …<br>"
          "Solid: abnormal · dashed: borderline · dotted: possible (sensitive operating point only) · "
          "faint grey: normal result")
VERDICT_TEXT = {v: (VERDICT_COLOURS[v], word) for v, word in
                (("abnormal", "ABNORMAL"), ("borderline", "BORDERLINE"), ("possible", "POSSIBLE abnormality"), ("normal", "normal"))}


def colour_bar_pixmap(width: int = 220, height: int = 14) -> QPixmap:
    """The map colour table as a horizontal bar, composited over mid grey so the
    transparent low end reads as 'no tint'."""
    lut = map_lut(width).astype(np.float32)
    alpha = lut[:, 3:4] / 255.0
    rgb = (lut[:, :3] * alpha + 128.0 * (1.0 - alpha)).astype(np.uint8)
    bar = np.ascontiguousarray(np.repeat(rgb[None], height, axis=0))
    image = QImage(bar.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive ``bar``


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def where_html(p: Prediction) -> str:
    """Where the model points: the lesion box (source pixels) and its share of the image,
    the peak, and the region (fused box)."""
    area = p.width * p.height
    share = lambda b: 100.0 * max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) / area  # noqa: E731
    fb = p.fused_box
    region = f"region (fused box) x {fb[0]:.0f}–{fb[2]:.0f}, y {fb[1]:.0f}–{fb[3]:.0f} px, {share(fb):.1f} % of the image"
    if p.lesion_box is None:
        return f"Where: {region} (this model gives no lesion box)"
    lb = p.lesion_box
    peak = f", peak at ({p.peak[0]:.0f}, {p.peak[1]:.0f})" if p.peak is not None else ""
    return (f"<b>Where: lesion box x {lb[0]:.0f}–{lb[2]:.0f}, y {lb[1]:.0f}–{lb[3]:.0f} px, {share(lb):.1f} % of the image</b>"
            f"{peak}; {region}")


def truth_html(p: Prediction, truth) -> str:
    """How the finding meets the folder's reference boxes (boxes.csv), when it has any."""
    if not truth:
        return ""
    import torch
    from torchvision.ops import box_iou

    def best_iou(box) -> float:
        return float(box_iou(torch.tensor([box], dtype=torch.float32), torch.tensor(truth, dtype=torch.float32)).max())

    parts = [f"Reference: {len(truth)} box(es) from boxes.csv (green, dashed)"]
    if p.peak is not None:
        x, y = p.peak
        d = min(max(b[0] - x, 0, x - b[2]) ** 2 + max(b[1] - y, 0, y - b[3]) ** 2 for b in truth) ** 0.5
        parts.append("the peak is inside one" if d == 0 else f"the peak is {d:.0f} px from the nearest")
    if p.lesion_box is not None:
        parts.append(f"lesion box IoU {best_iou(p.lesion_box):.2f}")
    parts.append(f"region IoU {best_iou(p.fused_box):.2f}")
    return "; ".join(parts) + "<br>"


def operating_points_html(cal) -> str:
    """The calibration's operating points with their validation sensitivity/specificity."""
    if not cal.calibrated:
        d = cal.default
        return (f"Operating points not calibrated for this model: threshold {d.threshold:.3f} only "
                f"(validation sensitivity {_pct(d.sensitivity)}, specificity {_pct(d.specificity)}).")
    rows = []
    for name, op in (("sensitive", cal.sensitive), ("default", cal.default), ("specific", cal.specific)):
        rows.append(f"{name} ≥ {op.threshold:.3f}: sensitivity {_pct(op.sensitivity)}, specificity {_pct(op.specificity)}")
    return (f"Operating points on {html.escape(cal.source)} (n = {cal.n}: {cal.n_abnormal} abnormal, {cal.n_normal} normal):<br>"
            + "<br>".join("&nbsp;&nbsp;" + r for r in rows))


class FindingsPanel(QWidget):
    """``opacity`` (0–100) drives the map overlays; ``header`` names the shown image,
    ``text`` holds the findings."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.header = QLabel(NOTHING_OPEN)
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.PlainText)  # patient names are data, never markup
        self.header.setObjectName("findings-header")
        self.header.setStyleSheet("font-weight: bold")
        self.text = QLabel(NOT_ANALYSED)
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Opacity of the maps (evidence map E, CAM, A); normal results are drawn fainter still")
        self.colour_bar = QLabel()
        self.colour_bar.setPixmap(colour_bar_pixmap())
        self.colour_bar.setToolTip("Map colours: transparent below 35 % of the scale, full colour from 80 %")
        ends = QHBoxLayout()
        ends.addWidget(QLabel("low"))
        ends.addStretch(1)
        self.scale_end = QLabel("high")
        ends.addWidget(self.scale_end)
        # The findings can be longer than the dock: they scroll, the controls below stay put.
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(self.text)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(self.scroll, 1)
        for w in (QLabel("Map opacity (E, CAM, A)"), self.opacity, QLabel("Map colours"), self.colour_bar):
            lay.addWidget(w)
        lay.addLayout(ends)
        legend = QLabel(LEGEND)
        legend.setWordWrap(True)
        lay.addWidget(legend)

    def reset(self, ref: ImageRef | None = None, text: str = NOT_ANALYSED) -> None:
        """Name the image (or say none is shown) and show ``text`` (escaped)."""
        self.header.setText(ref.describe() if ref is not None else NOTHING_OPEN)
        self.text.setText(html.escape(text))

    def show_outside(self, ref: ImageRef, reason: str) -> None:
        self.header.setText(ref.describe())
        self.text.setText(f"<b>Not labelled: {OUTSIDE}</b>: {html.escape(reason)}.<br>"
                          "The model was trained on limb and hip radiographs (CR/DX) only.")

    def show_prediction(self, ref: ImageRef, p: Prediction, cal, device: str = "", map_scaled: bool = True, truth=()) -> str:
        """Show ``p`` for image ``ref`` against calibration ``cal``; returns the verdict."""
        verdict = cal.verdict(p.probability)
        colour, word = VERDICT_TEXT[verdict]
        t, (b0, b1) = cal.default.threshold, cal.borderline
        if verdict == "borderline":
            why = f"within the borderline band {b0:.3f}–{b1:.3f} around the threshold {t:.3f}: read the image yourself"
        elif verdict == "possible":
            why = f"below the threshold {t:.3f}, above the sensitive operating point {cal.sensitive.threshold:.3f}"
        else:
            why = f"at the threshold {t:.3f}"
        miss = (f"Known miss rate at the threshold: {_pct(cal.miss_rate)} of abnormal validation images"
                if cal.miss_rate is not None else "Known miss rate: not measured for this model")
        stages = ", ".join(f"{k} {v:.3f}" for k, v in p.stages.items())
        windows = ", ".join(f"#{i + 1} {w.score:.3g}" for i, w in enumerate(p.windows))
        on = f", run on {html.escape(device)}" if device else ""
        research = getattr(p, "outside_intended_use", None)
        mark = (f"<b style='color:#ff5050'>RESEARCH USE ONLY — {OUTSIDE}: {html.escape(research)}</b><br>"
                if research else "")
        self.header.setText(ref.describe())
        self.scale_end.setText("high (this model's fixed scale)" if map_scaled else "high (this image's maximum: model not calibrated)")
        self.text.setText(
            f"{mark}<b style='color:{colour}'>{word}</b> — abnormal probability <b>{p.probability:.3f}</b>, {why}<br>"
            f"{where_html(p)}<br>{truth_html(p, truth)}"
            f"{miss}<br>"
            f"{operating_points_html(cal)}<br>"
            f"per stage: {stages}<br>"
            f"part windows by rank (score = mean activation A<sub>o</sub> inside the window, relative): {windows}<br>"
            f"model {html.escape(p.model.name)} ({html.escape(p.model.backbone)}, {p.model.input_size} px){on}<br>"
            f"sha256 <tt>{p.model.sha256[:32]}<br>{p.model.sha256[32:]}</tt>"
        )
        return verdict
