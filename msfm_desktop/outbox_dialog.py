"""File ▸ Send queued objects to PACS: the exported objects the PACS has not taken yet
(:mod:`engine.exports.outbox`), each with when it was queued, how many send runs it went
through and the last reason; *Send now* offers them again to the configured PACS in a
worker, *Remove* takes chosen ones off the queue (the files stay on disk).

The queue lives in the user data folder, so it is the same after a restart; the status
bar's "PACS outbox" button shows it whenever something waits.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from engine.exports.outbox import Outbox

from .workers import Task, run_task, stop_task

COLUMNS = ("File", "Queued", "Send runs", "Last reason", "PACS")


class OutboxDialog(QDialog):
    def __init__(self, prefs, outbox: Outbox | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS outbox")
        self.resize(820, 420)
        self.prefs, self.outbox = prefs, outbox or Outbox()
        self.worker: Task | None = None
        self.last_results: list | None = None
        cfg = prefs.pacs()
        self.target = QLabel(f"Send to {cfg.describe()}" if cfg else "No PACS configured: set one in File ▸ Settings")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.progress = QProgressBar()
        self.log = QListWidget()
        self.send_button, self.remove_button, close = QPushButton("Send now"), QPushButton("Remove from queue"), QPushButton("Close")
        self.send_button.clicked.connect(self.send_now)
        self.remove_button.clicked.connect(self.remove_selected)
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.target)
        lay.addWidget(self.table, 2)
        lay.addWidget(self.progress)
        lay.addWidget(self.log, 1)
        lay.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        try:
            rows = self.outbox.entries()
        except OSError as exc:
            rows = []
            self.log.addItem(f"✘ {exc}")
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, v in enumerate((r.path, r.queued, str(r.tries), r.reason, r.peer)):
                item = QTableWidgetItem(v)
                item.setToolTip(v)
                self.table.setItem(i, j, item)
        busy = self.worker is not None
        self.send_button.setEnabled(bool(rows) and self.prefs.pacs() is not None and not busy)
        self.remove_button.setEnabled(bool(rows) and not busy)

    def selected_paths(self) -> list[str]:
        return [self.table.item(i.row(), 0).text() for i in self.table.selectionModel().selectedRows()]

    def remove_selected(self) -> None:
        paths = self.selected_paths()
        if paths:
            self.outbox.forget(paths)
            self.log.addItem(f"Taken off the queue (the files stay on disk): {len(paths)}")
            self.refresh()

    def send_now(self) -> bool:
        cfg = self.prefs.pacs()
        if cfg is None or self.worker is not None:
            return False
        self.log.clear()
        self.log.addItem(f"Sending {self.table.rowCount()} queued object(s) to {cfg.describe()}…")
        self.worker = run_task(self.outbox.iter_send_queued, cfg, yielded=self._on_progress, returned=self._on_finished, errored=self._on_finished)
        self.refresh()
        return True

    def _on_progress(self, step) -> None:
        self.progress.setRange(0, max(1, step.total))
        self.progress.setValue(step.done)

    def _on_finished(self, results) -> None:
        self.worker = None
        if isinstance(results, Exception):
            self.log.addItem(f"✘ sending stopped: {type(results).__name__}: {results}")
            results = []
        self.last_results = list(results)
        for r in self.last_results:
            tries = f" (try {r.attempts})" if r.attempts > 1 else ""
            self.log.addItem(f"{'✔' if r.ok else '✘'} {r.path.name}: {r.message}{tries}")
        left = self.outbox.count()
        self.log.addItem(f"Done: {sum(r.ok for r in self.last_results)} stored, {left} still waiting")
        self.refresh()

    def done(self, result: int) -> None:  # noqa: D401 (Qt override)
        stop_task(self.worker)
        super().done(result)
