"""The fine-tuning worker: :func:`engine.library.finetune.run_finetune` in a child process.

Training holds the GIL in many short and some long stretches (checkpoint writes,
building models for the comparison): measured in a worker *thread*, it stalled the event
loop by up to 113 ms. In a spawned child process it cannot, and a crash in training
cannot take the app down. A QThread in the app relays the child's plain-data events as
signals; :meth:`TrainWorker.cancel` sets an event the child checks after every batch
(the engine then keeps a resumable ``last.pt``). After a finished run the child also
evaluates the previous and the new model on the run's held-out images
(:func:`engine.library.finetune.compare_models`) so the user can decide with numbers.

:class:`PreviewWorker` checks a labelled folder (:func:`engine.library.finetune.preview`: every
image found and decoded) in a thread: decoding thousands of images takes seconds to
minutes, and the panel must stay responsive meanwhile. Image decoding releases the GIL.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from engine.library.finetune import DataPreview, FineTuneRun, preview

from .training_child import run_child


class TrainWorker(QObject):
    event = Signal(object)  # engine.train.events.TrainEvent
    comparing = Signal(int, int)  # images evaluated, total (both models)
    compared = Signal(object)  # compare_models() dict
    finished = Signal(str, str)  # status (finished | cancelled | failed), message

    def __init__(self, run: FineTuneRun, resume: bool = False) -> None:
        super().__init__()
        self.run_record, self.resume = run, resume
        ctx = multiprocessing.get_context("spawn")
        self._ctx = ctx
        self._cancel = ctx.Event()

    def cancel(self) -> None:
        """Thread-safe: the run stops after the batch in progress."""
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        out = self._ctx.Queue()
        proc = self._ctx.Process(target=run_child, args=(str(self.run_record.dir), self.resume, out, self._cancel), daemon=True,
                                 name="msfm-fine-tune")
        proc.start()
        status: tuple[str, str] | None = None
        while status is None:
            try:
                kind, payload = out.get(timeout=0.2)
            except queue_mod.Empty:
                if not proc.is_alive():
                    status = ("failed", f"the training process ended unexpectedly (exit code {proc.exitcode}); "
                                        "the last checkpoint is kept, Resume continues from it")
                continue
            if kind == "event":
                self.event.emit(payload)
            elif kind == "comparing":
                self.comparing.emit(*payload)
            elif kind == "compared":
                self.compared.emit(payload)
            elif kind == "finished":
                status = payload
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
        self.finished.emit(*status)


class PreviewWorker(QObject):
    """Runs :func:`engine.library.finetune.preview` (decoding every image) off the UI thread.

    ``finished`` carries this worker's ``generation`` with the result, so the panel can
    ignore the answer of a preview it has since replaced by a newer one."""

    progress = Signal(int, int, int)  # generation, images checked, total
    finished = Signal(int, object)  # generation, DataPreview

    #: Seconds between progress signals: one per image would flood the event loop.
    PROGRESS_EVERY_S = 0.1

    def __init__(self, path: str | Path, generation: int) -> None:
        super().__init__()
        self.path, self.generation = str(path), generation
        self._cancel = threading.Event()
        self._last_emit = 0.0

    def cancel(self) -> None:
        """Thread-safe: the check stops before its next image."""
        self._cancel.set()

    def _progress(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - self._last_emit >= self.PROGRESS_EVERY_S:
            self._last_emit = now
            self.progress.emit(self.generation, done, total)

    @Slot()
    def run(self) -> None:
        try:
            result = preview(self.path, progress=self._progress, cancel=self._cancel.is_set)
        except Exception as exc:  # preview reports bad data itself; anything else must still reach the panel
            msg = f"the folder could not be checked: {type(exc).__name__}: {exc}"
            result = DataPreview(self.path, problems=(msg,), reason=msg)
        self.finished.emit(self.generation, result)
