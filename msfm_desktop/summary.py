"""The study summary: one sortable row per analysed image, and the study probability.

The study probability is the mean abnormal probability of its images (SPEC §3's
study-level rule for MURA), labelled at the model's threshold.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from engine.types import Prediction


class _Num(QTableWidgetItem):
    """Sorts by value, not by text."""

    def __lt__(self, other):  # noqa: D105
        return float(self.data(Qt.ItemDataRole.UserRole)) < float(other.data(Qt.ItemDataRole.UserRole))


class StudySummary(QWidget):
    COLUMNS = ("image", "abnormal p", "label", "main", "object", "parts")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.headline = QLabel("No study analysed. Analyse ▸ Analyse study (Ctrl+Shift+R).")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.headline)
        lay.addWidget(self.table, 1)
        self.predictions: list[Prediction] = []
        self.threshold = 0.5

    def clear(self) -> None:
        self.predictions = []
        self.table.setRowCount(0)
        self.headline.setText("Analysing…")

    def add(self, preds: list[Prediction], threshold: float) -> None:
        self.threshold = threshold
        self.table.setSortingEnabled(False)  # inserting into a sorted table scrambles rows
        for p in preds:
            self.predictions.append(p)
            r = self.table.rowCount()
            self.table.insertRow(r)
            name = Path(p.file).name + (f" [frame {p.frame + 1}]" if p.frame is not None else "")
            item = QTableWidgetItem(name)
            item.setToolTip(p.file)
            self.table.setItem(r, 0, item)
            for c, v in enumerate((p.probability,), start=1):
                self.table.setItem(r, c, self._num(v))
            self.table.setItem(r, 2, QTableWidgetItem("abnormal" if p.label else "normal"))
            for c, k in enumerate(("main", "object", "parts"), start=3):
                self.table.setItem(r, c, self._num(p.stages[k]))
        self.table.setSortingEnabled(True)
        self._headline()

    def study_probability(self) -> float | None:
        if not self.predictions:
            return None
        return sum(p.probability for p in self.predictions) / len(self.predictions)

    def _headline(self) -> None:
        sp = self.study_probability()
        if sp is None:
            return
        verdict = "ABNORMAL" if sp >= self.threshold else "normal"
        self.headline.setText(f"Study: <b>{verdict}</b>, mean abnormal probability {sp:.3f} over {len(self.predictions)} image(s)")

    @staticmethod
    def _num(v: float) -> QTableWidgetItem:
        it = _Num(f"{v:.3f}")
        it.setData(Qt.ItemDataRole.UserRole, float(v))
        return it
