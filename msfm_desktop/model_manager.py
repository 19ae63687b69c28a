"""Model ▸ Manage models: the bundled and the fine-tuned models, which one is active,
switching (after checking the file's SHA-256) and deleting fine-tuned ones.

Every metric is shown with the number of images it was measured on beside it: a κ of
0.6 on 8 images and on 800 are different claims. The validation metrics are the
checkpoint's own (``metrics`` with its ``n``, written by training); for a fine-tuned
model, the held-out comparison it was accepted on is shown too, with its n and 95 %
intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from engine.library.store import InstalledModel, ModelStore

HELD_OUT_HEADER = "accepted on (held-out, new vs previous)"
COLUMNS = ("", "name", "created", "data", "val AUC", "val κ", HELD_OUT_HEADER, "sha256")
SHA_COLUMN, HELD_OUT_COLUMN = COLUMNS.index("sha256"), COLUMNS.index(HELD_OUT_HEADER)


def metric_with_n(v: Any, n: Any) -> str:
    """``0.812 (n=43)``; the n is said to be unknown rather than left out."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "—"
    return f"{v:.3f} (n={n})" if isinstance(n, int) and not isinstance(n, bool) else f"{v:.3f} (n unknown)"


def _ci(ci: Any) -> str:
    return f" [{ci[0]:.3f}–{ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def comparison_text(cmp: dict | None) -> tuple[str, str]:
    """The held-out comparison a model was accepted on, as a cell (AUC and κ, new vs
    previous, each with its n) and a tooltip (with the 95 % intervals); empty without one."""
    if not cmp or not isinstance(cmp.get("new"), dict) or not isinstance(cmp.get("previous"), dict):
        return "", ""
    new, prev = cmp["new"], cmp["previous"]
    names = {"auc": "AUC", "kappa": "κ"}
    cell = ", ".join(f"{names[k]} {metric_with_n(new.get(k), new.get('n'))} vs {metric_with_n(prev.get(k), prev.get('n'))}" for k in names)
    tip = "\n".join(f"{names[k]}: new {metric_with_n(new.get(k), new.get('n'))}{_ci(new.get(f'{k}_ci'))}, "
                     f"previous {metric_with_n(prev.get(k), prev.get('n'))}{_ci(prev.get(f'{k}_ci'))}" for k in names)
    return cell, tip + "\n95% bootstrap intervals on the held-out images."


class ModelManagerDialog(QDialog):
    """``modelChosen`` carries the path of the model the user switched to."""

    modelChosen = Signal(object)

    def __init__(self, store: ModelStore, active: Path | None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(1200, 320)
        self.store, self.active = store, active
        self.models: list[InstalledModel] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.use_button, self.delete_button, close = QPushButton("Use this model"), QPushButton("Delete…"), QPushButton("Close")
        self.use_button.clicked.connect(self.use_selected)
        self.delete_button.clicked.connect(lambda: self.delete_selected(confirm=True))
        close.clicked.connect(self.accept)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        row = QHBoxLayout()
        for b in (self.use_button, self.delete_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(self.message)
        lay.addLayout(row)
        self.refresh()

    def refresh(self) -> None:
        self.models = self.store.list()
        self.table.setRowCount(len(self.models))
        for r, m in enumerate(self.models):
            active = self.active is not None and m.path.resolve() == Path(self.active).resolve()
            n = m.metrics.get("n")
            held_out, held_out_tip = comparison_text(m.comparison)
            cells = ("●" if active else "", m.name, m.created[:19], m.summary() or ("bundled" if m.builtin else ""),
                     metric_with_n(m.metrics.get("auc"), n), metric_with_n(m.metrics.get("kappa"), n), held_out, m.sha256[:16])
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(m.sha256 if c == SHA_COLUMN else (held_out_tip or "no held-out comparison") if c == HELD_OUT_COLUMN
                                else str(m.path))
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._selection_changed()

    def selected(self) -> InstalledModel | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.models[rows[0].row()] if rows else None

    def select(self, model_id: str) -> None:
        for r, m in enumerate(self.models):
            if m.id == model_id:
                self.table.selectRow(r)

    def _selection_changed(self) -> None:
        m = self.selected()
        self.use_button.setEnabled(m is not None)
        self.delete_button.setEnabled(m is not None and not m.builtin)

    def use_selected(self) -> bool:
        m = self.selected()
        if m is None:
            return False
        if not m.builtin and not self.store.verify(m):
            self.message.setText(f"{m.name}: the file no longer matches the SHA-256 recorded when it was installed; not used.")
            return False
        self.active = m.path
        self.message.setText(f"Active model: {m.name} (sha256 {m.sha256[:12]}).")
        self.refresh()
        self.modelChosen.emit(m.path)
        return True

    def delete_selected(self, confirm: bool = True) -> bool:
        m = self.selected()
        if m is None or m.builtin:
            return False
        if confirm and QMessageBox.question(self, "Delete model", f"Delete {m.name} ({m.sha256[:12]})? This cannot be undone.",
                                            defaultButton=QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:
            return False
        was_active = self.active is not None and m.path.resolve() == Path(self.active).resolve()
        self.store.delete(m.id)
        self.message.setText(f"Deleted {m.name}." + (" The bundled default model is active again." if was_active else ""))
        if was_active:
            self.active = self.store.default
            self.modelChosen.emit(self.store.default)
        self.refresh()
        return True


__all__ = ["ModelManagerDialog", "metric_with_n", "comparison_text"]
