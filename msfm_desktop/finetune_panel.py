"""Model ▸ Fine-tune: choose a labelled folder and a starting model, press one button,
watch it learn, compare, and accept or keep the current model.

Choosing a folder checks it in a task (:func:`~msfm_desktop.training.check_folder_task`):
only images that exist and decode are counted, and Fine-tune stays disabled, with the
reason, while there are fewer than :data:`engine.library.finetune.MIN_PER_CLASS` of each class.
Training runs in a child process (:func:`~msfm_desktop.training.train_in_child`); the app stays
usable. The new model is installed (a new file in the user data folder) only when the
user accepts it after the side-by-side held-out comparison: Accept stays disabled until
both models were measured on held-out images of both classes, and a model that scored
lower on AUC or κ is installed only after the user confirms, having seen n and the 95 %
intervals (:mod:`.finetune_report`). The previous model is never touched. An
interrupted run (cancelled, failed, or the app closed) can be resumed from its last
checkpoint, also after a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from engine.data.sources import DataError
from engine.errors import CheckpointError
from engine.library.finetune import DataPreview, FineTuneConfig, FineTuneRun, assess_comparison, list_runs
from engine.library.store import ModelStore
from engine.model.described import describe as describe_checkpoint
from engine.train.events import BatchEnd, EpochEnd, TrainMessage, TrainStarted

from .curves import TrainingCurves
from .finetune_decision import DecisionMixin
from .finetune_report import fill_table, finished_text, preview_text, setup_table, start_tooltip
from .finetune_settings import AdvancedSettings
from .training import ChildDone, Compared, Comparing, check_folder_task, train_in_child
from .workers import Task, run_task, stop_task


def _fmt_eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class FineTunePanel(DecisionMixin, QWidget):
    """``modelAccepted`` carries the installed model's path once the user accepts it."""

    modelAccepted = Signal(object)

    def __init__(self, store: ModelStore, device: str = "auto", active_model: Path | None = None, parent=None) -> None:
        super().__init__(parent)
        self.store, self.device, self.active_model = store, device, active_model
        self.worker: Task | None = None  # the training task (its child process) while one runs
        self.run: FineTuneRun | None = None
        self.comparison: dict | None = None
        self._installing: Task | None = None  # an install in progress
        self.installed_path: Path | None = None  # the model the last accepted install put in place
        self.status = "idle"
        self._t_start = 0.0
        self._steps_done = 0
        self.last_preview: DataPreview | None = None
        # Folder checks in flight: every worker is kept until its thread ends (a worker
        # dropped while running would be deleted under its thread); only the answer of the
        # newest (``_preview_gen``) is shown.
        self._previews: list[Task] = []
        self._preview_gen = 0
        self._preview_path = ""
        self._preview_pending = False
        self._start_after_preview: FineTuneConfig | None = None

        self.folder = QLineEdit()
        self.folder.setPlaceholderText("labelled folder: labels.csv, MURA layout, or two class folders")
        self.folder.editingFinished.connect(self._folder_edited)
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

        self.advanced = AdvancedSettings()
        # The form's fields, as the panel (and its tests) read them.
        a = self.advanced
        self.epochs, self.batch, self.lr, self.input_size, self.val_fraction = a.epochs, a.batch, a.lr, a.input_size, a.val_fraction

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
        self.table = QTableWidget()
        setup_table(self.table)
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
        lay.addWidget(QLabel("Held-out images, each model at its own threshold (95% bootstrap intervals):"))
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

    def _folder_edited(self) -> None:
        # editingFinished also fires when the field merely loses focus: decoding a large
        # folder again for an unchanged path would be wasted minutes.
        text = self.folder.text().strip()
        if text and text == self._preview_path and (self.previewing() or self.last_preview is not None):
            return
        self.refresh_preview()

    def refresh_preview(self, path: str | None = None) -> None:
        """Check the folder (default: the one typed) in a worker thread; the counts and
        the Fine-tune button follow when the answer comes (:meth:`previewing` till then)."""
        text = (self.folder.text() if path is None else path).strip()
        for task in self._previews:
            task.cancel()  # its answer would be ignored anyway
        self._preview_gen += 1
        self._preview_path = text
        self.last_preview = None
        if not text:
            self._preview_pending = False
            self.preview_label.setText("No folder chosen.")
            self._update_start_button()
            return
        self._preview_pending = True
        self.preview_label.setText(f"Checking the images of {text}…")
        self._update_start_button()
        gen = self._preview_gen
        self._previews = [t for t in self._previews if t.running()]
        self._previews.append(run_task(check_folder_task, text, yielded=lambda p: self._on_preview_progress(gen, p.done, p.total),
                                       returned=lambda p: self._on_preview(gen, p)))

    def previewing(self) -> bool:
        """True while the newest folder check has not answered."""
        return self._preview_pending

    def _on_preview_progress(self, gen: int, done: int, total: int) -> None:
        if gen == self._preview_gen:
            self.preview_label.setText(f"Checking the images: {done} of {total} read and decoded…")

    def _on_preview(self, gen: int, p: DataPreview) -> None:
        if gen != self._preview_gen:
            return
        self._preview_pending = False
        self.last_preview = p
        self.preview_label.setText(preview_text(p))
        self._update_start_button()
        pending, self._start_after_preview = self._start_after_preview, None
        if pending is not None and pending.data == p.path:
            self._create_and_launch(pending, p)
        elif pending is not None:
            self.state.setText("The folder changed before its check finished; nothing was started. Press Fine-tune again.")
            self._update_start_button()

    def _update_start_button(self) -> None:
        p = self.last_preview
        ok = p is not None and p.can_start and self.worker is None and self._start_after_preview is None
        self.start_button.setEnabled(ok)
        self.start_button.setToolTip(start_tooltip(p, self.previewing()))

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
        self.base.addItem(f"{d.name} — {Path(path).name}", str(path))
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
        """Start a new run (from the form, or ``config``). Its folder must have passed the
        check; a folder not checked yet is checked first (off the UI thread) and the run
        starts when it passes. Too little usable data starts nothing and says why."""
        if self.worker is not None or self._start_after_preview is not None:
            return
        cfg = config or self.config()
        p = self.last_preview
        if p is not None and p.path == cfg.data and not self.previewing():
            self._create_and_launch(cfg, p)
            return
        self._start_after_preview = cfg
        self.state.setText(f"Checking the images of {cfg.data} before starting…")
        self.refresh_preview(cfg.data)

    def _create_and_launch(self, cfg: FineTuneConfig, checked: DataPreview) -> None:
        if not checked.can_start:
            self.state.setText(f"Cannot fine-tune: {checked.reason}.")
            self._update_start_button()
            return
        try:
            run = FineTuneRun.create(self.store, cfg, checked=checked)
        except (DataError, CheckpointError, OSError) as exc:  # the engine's own refusal, or an unreadable base model
            self.state.setText(f"Could not start: {exc}")
            self._update_start_button()
            return
        self._launch(run, resume=False)

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
        self._set_running(True)
        self.worker = run_task(train_in_child, run, resume, yielded=self._on_message, returned=self._on_finished,
                               errored=lambda exc: self._on_finished(ChildDone("failed", f"{type(exc).__name__}: {exc}")))

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.state.setText("Cancelling after this batch…")

    def running(self) -> bool:
        """True while a run trains, or is about to start once its folder is checked."""
        return self._start_after_preview is not None or (self.worker is not None and self.worker.running())

    def _on_message(self, msg) -> None:
        """A message of the training child: a training event, or the comparison's progress and result."""
        if isinstance(msg, Comparing):
            self._on_comparing(msg.done, msg.total)
        elif isinstance(msg, Compared):
            self._on_compared(msg.comparison)
        else:
            self._on_event(msg)

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
        fill_table(self.table, cmp)

    def _on_finished(self, done: ChildDone) -> None:
        status, message = done.status, done.message
        self.status = status
        if self.run is not None:  # the child process updated job.json
            self.run = FineTuneRun.load(self.run.dir) or self.run
        self.worker = None
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "finished" else 0)
        self.state.setText(finished_text(status, message, assess_comparison(self.comparison)))
        # After a finished run Keep is always offered; Accept only with a usable comparison.
        self._show_decision(status == "finished")
        self.refresh_resumable()

    def _set_running(self, on: bool) -> None:
        self._update_start_button()
        self.cancel_button.setEnabled(on)
        self.resume_button.setEnabled(False if on else self.resume_button.isEnabled())

    def shutdown(self) -> None:
        """The window is closing: stop at the next batch (the run stays resumable) and wait."""
        stop_task(self.worker)
        for task in self._previews:
            stop_task(task)
        self._previews.clear()
        if self._installing is not None:  # an install finishes (it is short); never half a model folder
            self._installing.wait()
