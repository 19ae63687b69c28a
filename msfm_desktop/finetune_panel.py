"""Model ▸ Fine-tune: choose a labelled folder and a starting model, press one button,
watch it learn, compare, and accept or keep the current model.

Training runs in a :class:`~msfm_desktop.training.TrainWorker` thread; the app stays
usable. The new model is installed (a new file in the user data folder) only when the
user accepts it after the side-by-side comparison; the previous model is never touched.
An interrupted run (cancelled, failed, or the app closed) can be resumed from its last
checkpoint, also after a restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from engine.checkpoint import describe_checkpoint, read_checkpoint
from engine.errors import CheckpointError
from engine.finetune import FineTuneConfig, FineTuneRun, list_runs, preview
from engine.store import ModelStore
from engine.train.events import BatchEnd, EpochEnd, TrainMessage, TrainStarted

from .curves import TrainingCurves
from .training import TrainWorker
from .workers import start_in_thread

COMPARE_ROWS = ("n", "auc", "kappa", "accuracy", "sensitivity", "specificity", "threshold")


def _fmt_eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class FineTunePanel(QWidget):
    """``modelAccepted`` carries the installed model's path once the user accepts it."""

    modelAccepted = Signal(object)

    def __init__(self, store: ModelStore, device: str = "auto", active_model: Path | None = None, parent=None) -> None:
        super().__init__(parent)
        self.store, self.device, self.active_model = store, device, active_model
        self.worker: TrainWorker | None = None
        self.thread: QThread | None = None
        self.run: FineTuneRun | None = None
        self.comparison: dict | None = None
        self.status = "idle"
        self._t_start = 0.0
        self._steps_done = 0
        self.last_preview = None

        self.folder = QLineEdit()
        self.folder.setPlaceholderText("labelled folder: labels.csv, MURA layout, or two class folders")
        self.folder.editingFinished.connect(self.refresh_preview)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.preview_label = QLabel("No folder chosen.")
        self.preview_label.setWordWrap(True)
        self.base = QComboBox()
        self.refresh_models()
        other = QPushButton("Other checkpoint…")
        other.clicked.connect(self._browse_checkpoint)
        base_row = QHBoxLayout()
        base_row.addWidget(self.base, 1)
        base_row.addWidget(other)

        self.advanced = QGroupBox("Advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        self.epochs, self.batch, self.input_size = QSpinBox(), QSpinBox(), QSpinBox()
        self.epochs.setRange(1, 200)
        self.epochs.setValue(3)
        self.batch.setRange(1, 256)
        self.batch.setValue(5)
        self.input_size.setRange(0, 1024)
        self.input_size.setSingleStep(32)
        self.input_size.setSpecialValueText("as the starting model")
        self.lr, self.val_fraction = QDoubleSpinBox(), QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 1.0)
        self.lr.setSingleStep(1e-5)
        self.lr.setValue(1e-4)
        self.val_fraction.setRange(0.05, 0.5)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setValue(0.2)
        adv = QFormLayout()
        for label, w in (("Epochs", self.epochs), ("Batch size", self.batch), ("Learning rate", self.lr),
                         ("Input size (px)", self.input_size), ("Validation fraction", self.val_fraction)):
            adv.addRow(label, w)
        holder = QWidget()
        holder.setLayout(adv)
        holder.setVisible(False)
        self.advanced.toggled.connect(holder.setVisible)  # hidden until asked for
        QVBoxLayout(self.advanced).addWidget(holder)

        self.start_button, self.cancel_button, self.resume_button = QPushButton("Fine-tune"), QPushButton("Cancel"), QPushButton("Resume")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume_latest)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.resume_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.state = QLabel("")
        self.state.setWordWrap(True)
        self.curves = TrainingCurves()
        self.curves.setMinimumHeight(200)
        # One row per model, one column per metric: two rows fit under the curves.
        self.table = QTableWidget(2, len(COMPARE_ROWS))
        self.table.setVerticalHeaderLabels(["previous", "new"])
        self.table.setHorizontalHeaderLabels(list(COMPARE_ROWS))
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 2 * self.table.verticalHeader().defaultSectionSize() + 24)
        self.accept_button, self.reject_button = QPushButton("Accept new model"), QPushButton("Keep current model")
        self.accept_button.clicked.connect(self.accept_new)
        self.reject_button.clicked.connect(self.reject_new)
        decide = QHBoxLayout()
        decide.addWidget(self.accept_button)
        decide.addWidget(self.reject_button)

        form = QFormLayout()
        form.addRow("Folder", row)
        form.addRow("", self.preview_label)
        form.addRow("Start from", base_row)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.advanced)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.state)
        lay.addWidget(self.curves, 1)
        lay.addWidget(QLabel("Held-out images, each model at its own threshold:"))
        lay.addWidget(self.table)
        lay.addLayout(decide)
        self._set_running(False)
        self._show_decision(False)
        self.refresh_resumable()

    # ----- inputs
    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Labelled folder")
        if d:
            self.folder.setText(d)
            self.refresh_preview()

    def refresh_preview(self) -> None:
        text = self.folder.text().strip()
        if not text:
            self.preview_label.setText("No folder chosen.")
            self.start_button.setEnabled(False)
            return
        p = preview(text)
        lines = []
        if p.layout:
            t = p.class_totals()
            lines.append(f"{p.layout}: {p.n} images — {t['0']} normal, {t['1']} abnormal")
            lines += [f"  {part}: {c.get('0', 0)} normal, {c.get('1', 0)} abnormal" for part, c in p.counts.items()]
        lines += [f"⚠ {msg}" for msg in p.problems[:8]] + ([f"⚠ … {len(p.problems) - 8} more"] if len(p.problems) > 8 else [])
        self.preview_label.setText("\n".join(lines))
        self.start_button.setEnabled(p.usable and self.worker is None)
        self.last_preview = p

    def _browse_checkpoint(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Starting checkpoint", "", "Checkpoints (*.pt);;All files (*)")
        if f:
            self.add_checkpoint(f)

    def add_checkpoint(self, path: str | Path) -> bool:
        """Offer any MSFM checkpoint file as the starting model (checked first)."""
        try:
            d = describe_checkpoint(path)
        except CheckpointError as exc:
            self.state.setText(f"Cannot start from this checkpoint: {exc}")
            return False
        self.base.addItem(f"{d['name']} — {Path(path).name}", str(path))
        self.base.setCurrentIndex(self.base.count() - 1)
        return True

    def refresh_models(self) -> None:
        self.base.clear()
        models = self.store.list()
        for m in models:
            self.base.addItem(m.name + ("  (active)" if self.active_model and m.path == self.active_model else ""), str(m.path))
        if self.active_model is not None and all(m.path != Path(self.active_model) for m in models) and Path(self.active_model).is_file():
            self.base.addItem(f"{Path(self.active_model).name}  (active)", str(self.active_model))
        for i in range(self.base.count()):
            if self.active_model and self.base.itemData(i) == str(self.active_model):
                self.base.setCurrentIndex(i)

    def config(self) -> FineTuneConfig:
        return FineTuneConfig(
            data=self.folder.text().strip(), base=str(self.base.currentData()), epochs=self.epochs.value(), batch_size=self.batch.value(),
            lr=self.lr.value(), input_size=self.input_size.value() or None, val_fraction=self.val_fraction.value(), device=self.device,
        )

    # ----- running
    def start(self, config: FineTuneConfig | None = None) -> None:
        """Start a new run (from the form, or ``config``)."""
        if self.worker is not None:
            return
        self._launch(FineTuneRun.create(self.store, config or self.config()), resume=False)

    def resumable_runs(self) -> list[FineTuneRun]:
        return [r for r in list_runs(self.store) if r.resumable()]

    def refresh_resumable(self) -> None:
        runs = self.resumable_runs()
        self.resume_button.setEnabled(bool(runs) and self.worker is None)
        self.resume_button.setToolTip(f"Continue {runs[0].dir.name} ({runs[0].status}) from its last checkpoint" if runs else "No interrupted run")

    def resume_latest(self) -> None:
        runs = self.resumable_runs()
        if runs and self.worker is None:
            self._launch(runs[0], resume=True)

    def _launch(self, run: FineTuneRun, resume: bool) -> None:
        self.run, self.comparison, self.status = run, None, "running"
        self.curves.clear()
        self._show_decision(False)
        self.progress.setRange(0, 0)
        self.state.setText(f"{'Resuming' if resume else 'Starting'} {run.dir.name}…")
        self._t_start, self._steps_done = time.perf_counter(), 0
        self.worker = TrainWorker(run, resume)
        self.worker.event.connect(self._on_event)
        self.worker.comparing.connect(self._on_comparing)
        self.worker.compared.connect(self._on_compared)
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.thread = start_in_thread(self.worker, self)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.state.setText("Cancelling after this batch…")

    def running(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def _on_event(self, ev) -> None:
        if isinstance(ev, TrainStarted):
            self._total_steps = max(1, (ev.epochs - ev.start_epoch) * ev.steps_per_epoch - ev.start_step)
            self._epochs, self._device = ev.epochs, ev.device
            self.progress.setRange(0, self._total_steps)
            self.progress.setValue(0)
            self.state.setText(f"Training on {ev.device}: {ev.n_train} images, {ev.n_val} held out, {ev.epochs} epoch(s)")
        elif isinstance(ev, BatchEnd):
            self._steps_done += 1
            self.progress.setValue(min(self._steps_done, self._total_steps))
            if ev.losses:
                self.curves.add_losses(ev.epoch * ev.steps + ev.step, ev.losses)
            rate = (time.perf_counter() - self._t_start) / self._steps_done
            eta = _fmt_eta(rate * (self._total_steps - self._steps_done))
            self.state.setText(f"Epoch {ev.epoch + 1}/{self._epochs}, step {ev.step}/{ev.steps} on {self._device} — ETA {eta} "
                               f"(plus validation) — loss {ev.losses.get('total', float('nan')):.3f}")
        elif isinstance(ev, EpochEnd) and ev.val:
            self.curves.add_validation(ev.epoch + 1, ev.val)
        elif isinstance(ev, TrainMessage):
            self.state.setText(ev.text)

    def _on_comparing(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.state.setText(f"Comparing the previous and the new model on the held-out images ({done}/{total})…")

    def _on_compared(self, cmp: dict) -> None:
        self.comparison = cmp
        for row, key in enumerate(("previous", "new")):
            for col, metric in enumerate(COMPARE_ROWS):
                v = cmp[key].get(metric)
                self.table.setItem(row, col, QTableWidgetItem("—" if v is None else (str(v) if isinstance(v, int) else f"{v:.3f}")))
        self.table.resizeColumnsToContents()

    def _on_finished(self, status: str, message: str) -> None:
        self.status = status
        if self.run is not None:  # the child process updated job.json
            self.run = FineTuneRun.load(self.run.dir) or self.run
        self._set_running(False)
        self.worker = None
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "finished" else 0)
        if status == "finished" and self.comparison is not None:
            self.state.setText("Done. Compare the two models below, then accept the new one or keep the current one.")
            self._show_decision(True)
        elif status == "cancelled":
            self.state.setText("Cancelled. The last checkpoint is kept; Resume continues from it.")
        else:
            self.state.setText(f"Stopped: {message}" if message else f"Stopped ({status}).")
        self.refresh_resumable()

    # ----- decision
    def accept_new(self) -> Path | None:
        """Install the new model (a new file; nothing is overwritten) and make it active."""
        if self.run is None or self.comparison is None or not self.run.best.is_file():
            return None
        meta = json.loads(read_checkpoint(self.run.best)["meta"])
        m = self.store.install(self.run.best, name=f"Fine-tuned on {Path(self.run.config.data).name}", base_sha256=self.run.base_sha256,
                               data=dict(meta.get("data") or {}), metrics=dict(meta.get("metrics") or {}), comparison=self.comparison)
        self.run.save(status="accepted")
        self._show_decision(False)
        self.state.setText(f"Installed and active: {m.name} (sha256 {m.sha256[:12]}).")
        self.refresh_models()
        self.modelAccepted.emit(m.path)
        return m.path

    def reject_new(self) -> None:
        if self.run is not None:
            self.run.save(status="rejected")
        self._show_decision(False)
        self.state.setText("Kept the current model. The new one was not installed.")

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on and bool(self.last_preview and self.last_preview.usable))
        self.cancel_button.setEnabled(on)
        self.resume_button.setEnabled(False if on else self.resume_button.isEnabled())

    def _show_decision(self, on: bool) -> None:
        self.accept_button.setEnabled(on)
        self.reject_button.setEnabled(on)

    def shutdown(self) -> None:
        """The window is closing: stop at the next batch (the run stays resumable) and wait."""
        if self.worker is not None:
            self.worker.cancel()
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
