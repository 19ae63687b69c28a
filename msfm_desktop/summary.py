"""The study summary: per-patient and per-study verdicts and one sortable row per image.

A study's verdict is its most abnormal image's (:mod:`.verdicts`), per patient and per
study; a partial run says so. Every row names its patient, study and image; double-click
or Enter on a row opens that image with its result. Rows appear as images finish.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from engine.types import Prediction

from .findings import OUTSIDE, VERDICT_TEXT
from .session import ImageRef, OpenStudy, OutOfScopeResult, plural
from .verdicts import GroupVerdict, group_verdicts

KEY_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_TINT = {"abnormal": QColor(150, 30, 30, 150), "borderline": QColor(160, 110, 0, 130), "possible": QColor(130, 110, 30, 90)}
IDLE = "No study analysed. Analyse ▸ Analyse study (Ctrl+Shift+R)."


class _Num(QTableWidgetItem):
    """Sorts by value, not by text (rows without a value sort first)."""

    def __lt__(self, other):  # noqa: D105
        a, b = self.data(Qt.ItemDataRole.UserRole), other.data(Qt.ItemDataRole.UserRole)
        return (-1.0 if a is None else float(a)) < (-1.0 if b is None else float(b))


def verdict_html(g: GroupVerdict) -> str:
    """One line: whose verdict, which, at which image, over how many of the images."""
    who = html.escape(g.patient) + (f" · study {html.escape(g.study)}" if g.study is not None else "")
    counts = f"{g.n_analysed} of {plural(g.n_images, 'image')} analysed"
    extra = [f"{g.n_outside} {OUTSIDE}"] if g.n_outside else []
    extra += [f"{g.n_failed} failed"] if g.n_failed else []
    counts += (" (" + ", ".join(extra) + ")") if extra else ""
    if g.verdict is None:
        return f"{who}: <b>no verdict</b> — {counts}"
    colour, word = VERDICT_TEXT[g.verdict]
    partial = "" if g.complete else " <b style='color:#ffb000'>INCOMPLETE</b> — the verdict covers only the analysed images;"
    return (f"{who}: <b style='color:{colour}'>{word}</b> — max abnormal probability {g.top_probability:.3f} at "
            f"{html.escape(g.top.image_name)};{partial} {counts}")


class StudySummary(QWidget):
    """``rowOpened`` carries (path, frame) of the row the user opened."""

    COLUMNS = ("patient", "study", "image", "abnormal p", "verdict", "main", "object", "parts")
    rowOpened = Signal(object, object)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setToolTip("Double-click or Enter opens the image with its result")
        self.table.itemActivated.connect(self._activated)
        self.headline = QLabel(IDLE)
        self.headline.setTextFormat(Qt.TextFormat.RichText)
        self.headline.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.headline)
        lay.addWidget(self.table, 1)

    def reset(self, text: str = IDLE) -> None:
        self.table.setRowCount(0)
        self.headline.setText(html.escape(text))

    def row_count(self) -> int:
        return self.table.rowCount()

    def row_texts(self, r: int) -> list[str]:
        return [self.table.item(r, c).text() if self.table.item(r, c) else "" for c in range(len(self.COLUMNS))]

    def set_result(self, ref: ImageRef, result: object, cal) -> None:
        """Add or update the row of ``ref``."""
        self.table.setSortingEnabled(False)  # inserting into a sorted table scrambles rows
        r = self._find(ref)
        if r is None:
            r = self.table.rowCount()
            self.table.insertRow(r)
        name = QTableWidgetItem(ref.image_name)
        name.setToolTip(str(ref.path))
        name.setData(KEY_ROLE, (str(ref.path), ref.frame))
        cells: list[QTableWidgetItem] = [QTableWidgetItem(ref.patient_label), QTableWidgetItem(ref.study), name]
        verdict = None
        if isinstance(result, Prediction):
            verdict = cal.verdict(result.probability)
            word = VERDICT_TEXT[verdict][1]
            if getattr(result, "outside_intended_use", None):
                word += f" (RESEARCH USE ONLY — {OUTSIDE})"
            cells += [self._num(result.probability), QTableWidgetItem(word)] + [self._num(result.stages[k]) for k in ("main", "object", "parts")]
        else:
            why = f"{OUTSIDE}: {result.reason}" if isinstance(result, OutOfScopeResult) else f"not analysed: {getattr(result, 'reason', result)}"
            cells += [self._num(None), QTableWidgetItem(why)] + [self._num(None) for _ in range(3)]
            cells[4].setToolTip(why)
        tint = ROW_TINT.get(verdict or "")
        for c, item in enumerate(cells):
            if tint is not None:
                item.setBackground(QBrush(tint))
                f = QFont(item.font())
                f.setBold(verdict == "abnormal")
                item.setFont(f)
            self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def show_verdicts(self, session: OpenStudy, cal, running: bool = False) -> None:
        """The headline: per patient (when there are several) and per study."""
        studies = group_verdicts(session, cal, "study")
        lines = []
        patients = group_verdicts(session, cal, "patient")
        if len(patients) > 1:
            lines += ["<u>Per patient</u>"] + [verdict_html(g) for g in patients] + ["<u>Per study</u>"]
        lines += [verdict_html(g) for g in studies]
        run = session.run
        if run is not None and run.cancelled:
            lines.insert(0, f"<b style='color:#ffb000'>Study analysis cancelled after {run.done} of {plural(run.total, 'image')}.</b>")
        elif running and run is not None:
            lines.insert(0, f"Analysing: {run.done} of {plural(run.total, 'image')} done…")
        self.headline.setText("<br>".join(lines))

    def _find(self, ref: ImageRef) -> int | None:
        want = (str(ref.path), ref.frame)
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 2)
            if item is not None and tuple(item.data(KEY_ROLE)) == want:
                return r
        return None

    def _activated(self, item: QTableWidgetItem) -> None:
        key = self.table.item(item.row(), 2).data(KEY_ROLE)
        if key:
            self.rowOpened.emit(key[0], key[1])

    def open_row(self, r: int) -> None:
        """Open row ``r`` as double-click/Enter would."""
        self._activated(self.table.item(r, 2))

    @staticmethod
    def _num(v: float | None) -> QTableWidgetItem:
        it = _Num("" if v is None else f"{v:.3f}")
        it.setData(Qt.ItemDataRole.UserRole, None if v is None else float(v))
        return it
