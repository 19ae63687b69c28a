"""Drawing the findings report as PDF pages (ReportLab): one page per analysed image, a
last page listing the images that were not labelled, and on every page the patient and
study it belongs to and "decision support, not a diagnosis".

Text is set in DejaVu Sans (``resources/fonts``), so a patient name in any script prints as
written rather than as question marks. Boxes in words use image coordinates (the image's
left is not necessarily the patient's right).
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .. import __version__
from ..types import Prediction

PAGE_W, PAGE_H = 595.28, 841.89  # A4 in points
MARGIN = 36.0
FONT, BOLD = "MSFM-DejaVuSans", "MSFM-DejaVuSans-Bold"
DISCLAIMER = "Decision support, not a diagnosis. The marks show where the model's evidence lies; they are not a segmentation."
IMAGE_LONG_SIDE = 1600  # px of the page's picture: sharp in print, a few hundred kB per page


@dataclass(frozen=True)
class PageText:
    """What one image's page says besides the picture (all plain text, already anonymised
    where the export is)."""

    patient: str
    study: str
    image: str
    made: str


def register_fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    from ..resources import FONTS

    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, str(FONTS / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont(BOLD, str(FONTS / "DejaVuSans-Bold.ttf")))


def place_in_words(box, width: int, height: int) -> str:
    """Where an xyxy box (pixels of the ``width`` x ``height`` image) lies, in words:
    "upper left", "centre", "lower middle"... by the thirds its centre falls in."""
    cx, cy = (box[0] + box[2]) / 2 / max(1, width), (box[1] + box[3]) / 2 / max(1, height)
    row = ("upper", "middle", "lower")[min(2, int(cy * 3))]
    col = ("left", "centre", "right")[min(2, int(cx * 3))]
    if (row, col) == ("middle", "centre"):
        return "centre"
    return f"{row} {col}" if row != "middle" else f"middle {col}"


def finding_lines(pred: Prediction, calibration=None) -> list[str]:
    """The finding, its place, the probability and the operating point, as printed."""
    threshold = calibration.default.threshold if calibration is not None else pred.threshold
    label = "ABNORMAL: a fracture-like finding" if pred.label else "NORMAL: no finding"
    lines = [f"Result: {label} at the operating point"]
    if calibration is not None:
        verdict, reached = calibration.band(pred.probability)
        if verdict in ("borderline", "possible"):
            why = "within the borderline band around the threshold" if verdict == "borderline" else "flagged only at the sensitive operating point"
            lines.append(f"Verdict: {verdict} ({why})")
    box = pred.lesion_box if pred.lesion_box is not None else pred.fused_box
    what = "lesion box" if pred.lesion_box is not None else "region (fused box)"
    x0, y0, x1, y1 = (float(v) for v in box)
    where = place_in_words(box, pred.width, pred.height)
    if pred.label:
        lines.append(f"Place: {what} in the {where} of the image, x {x0:.0f}–{x1:.0f}, y {y0:.0f}–{y1:.0f} px of {pred.width} × {pred.height} "
                     "(image coordinates, not the patient's side)")
    else:
        lines.append(f"Strongest evidence (below the threshold): {where} of the image, x {x0:.0f}–{x1:.0f}, y {y0:.0f}–{y1:.0f} px")
    op = f"Probability of abnormal: {pred.probability:.3f}"
    if threshold is not None:
        op += f"; operating point: flagged at p ≥ {threshold:.3f}"
    lines.append(op)
    if calibration is not None and calibration.default.sensitivity is not None:
        d = calibration.default
        spec = f"{d.specificity:.1%}" if d.specificity is not None else "not measured"
        lines.append(f"Known at this threshold on {calibration.source} ({calibration.n} images): sensitivity {d.sensitivity:.1%}, specificity {spec}")
    else:
        lines.append("Known sensitivity/specificity: not measured for this model")
    return lines


def _picture(rgb: np.ndarray):
    from reportlab.lib.utils import ImageReader

    h, w = rgb.shape[:2]
    scale = min(1.0, IMAGE_LONG_SIDE / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("the overlay could not be encoded")
    return ImageReader(io.BytesIO(jpeg.tobytes())), rgb.shape[1], rgb.shape[0]


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    from reportlab.lib.utils import simpleSplit

    return simpleSplit(text, font, size, width)


class ReportCanvas:
    """One PDF being drawn; :meth:`bytes` ends it."""

    def __init__(self, title: str, total_pages: int) -> None:
        from reportlab.pdfgen import canvas

        register_fonts()
        self.buf = io.BytesIO()
        # invariant: no wall-clock ID in the file, so a report's bytes depend on its content only
        self.c = canvas.Canvas(self.buf, pagesize=(PAGE_W, PAGE_H), invariant=1, pageCompression=1)
        self.c.setTitle(title)
        self.c.setAuthor("MSFM Desktop")
        self.c.setCreator(f"MSFM Desktop {__version__}")
        self.c.setSubject("Decision support, not a diagnosis")
        self.pages, self.total = 0, total_pages

    def _lines(self, y: float, lines: Sequence[str], size: float = 9.5, font: str = FONT, colour=(0, 0, 0)) -> float:
        self.c.setFillColorRGB(*colour)
        for line in lines:
            for part in _wrap(line, font, size, PAGE_W - 2 * MARGIN):
                self.c.setFont(font, size)
                self.c.drawString(MARGIN, y, part)
                y -= size * 1.3
        self.c.setFillColorRGB(0, 0, 0)
        return y

    def _frame(self, text: PageText, heading: str) -> float:
        c = self.c
        c.setFillColorRGB(0.12, 0.2, 0.35)
        c.rect(0, PAGE_H - 50, PAGE_W, 50, stroke=0, fill=1)
        c.setFillColorRGB(1, 1, 1)
        c.setFont(BOLD, 13)
        c.drawString(MARGIN, PAGE_H - 24, heading)
        c.setFont(FONT, 9)
        c.drawString(MARGIN, PAGE_H - 40, "Decision support, not a diagnosis")
        y = self._lines(PAGE_H - 68, [f"Patient: {text.patient}", f"Study: {text.study}", f"Image: {text.image}", f"Report made: {text.made}"], 9.5)
        return y - 4

    def _footer(self, model_line: str) -> None:
        y = self._lines(MARGIN + 22, [model_line], 7.5, colour=(0.25, 0.25, 0.25))
        self._lines(y, [DISCLAIMER], 7.5, colour=(0.25, 0.25, 0.25))

    def image_page(self, text: PageText, rgb: np.ndarray, finding: Sequence[str], model_line: str, research: str | None) -> None:
        """One analysed image: identity, the picture with its evidence, the finding."""
        y = self._frame(text, "MSFM findings report")
        if research:
            y = self._lines(y, [f"RESEARCH USE ONLY — outside the model's intended use: {research}"], 10, BOLD, (0.75, 0.0, 0.0)) - 2
        text_h = 14 * (len(finding) + 1) + 40
        img, w, h = _picture(rgb)
        box_w, box_h = PAGE_W - 2 * MARGIN, y - (MARGIN + 40 + text_h)
        s = min(box_w / w, box_h / h)
        dw, dh = w * s, h * s
        self.c.drawImage(img, MARGIN + (box_w - dw) / 2, y - dh, dw, dh)
        y -= dh + 14
        y = self._lines(y, finding[:1], 11, BOLD)
        self._lines(y, finding[1:], 9.5)
        self._footer(model_line)
        self._end_page()

    def list_page(self, text: PageText, heading: str, rows: Sequence[str], model_line: str) -> None:
        """Images of the study that were not labelled, each with its reason."""
        y = self._frame(text, "MSFM findings report")
        y = self._lines(y - 6, [heading], 11, BOLD)
        self._lines(y, rows, 9.5)
        self._footer(model_line)
        self._end_page()

    def _end_page(self) -> None:
        self.pages += 1
        self.c.setFont(FONT, 7.5)
        self.c.drawRightString(PAGE_W - MARGIN, MARGIN - 12, f"page {self.pages} of {self.total}")
        self.c.showPage()

    def bytes(self) -> bytes:
        self.c.save()
        return self.buf.getvalue()


def now_text(when: _dt.datetime | None = None) -> str:
    return (when or _dt.datetime.now()).strftime("%Y-%m-%d %H:%M")


__all__ = ["DISCLAIMER", "PageText", "ReportCanvas", "finding_lines", "now_text", "place_in_words", "register_fonts"]
