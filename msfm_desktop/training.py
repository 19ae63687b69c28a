"""The fine-tuning worker: :func:`engine.finetune.run_finetune` in a QThread.

Every training event is forwarded as a signal (plain data); :meth:`TrainWorker.cancel`
makes the run stop at the next batch (the engine keeps a resumable ``last.pt``). After a
finished run the worker evaluates the previous and the new model on the run's held-out
images (:func:`engine.finetune.compare_models`) so the user can decide with numbers.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal, Slot

from engine.finetune import FineTuneRun, compare_models, held_out, run_finetune


class TrainWorker(QObject):
    event = Signal(object)  # engine.train.events.TrainEvent
    comparing = Signal(int, int)  # images evaluated, total (both models)
    compared = Signal(object)  # compare_models() dict
    finished = Signal(str, str)  # status (finished | cancelled | failed), message

    def __init__(self, run: FineTuneRun, resume: bool = False) -> None:
        super().__init__()
        self.run_record, self.resume = run, resume
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Thread-safe: the run stops after the batch in progress."""
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        run = self.run_record
        gen = run_finetune(run, self.resume)
        try:
            for ev in gen:
                self.event.emit(ev)
                if self._cancel.is_set():
                    break
        except Exception as exc:  # NaN loss, unreadable data, ...: the job says why
            gen.close()
            self.finished.emit("failed", str(exc) or type(exc).__name__)
            return
        gen.close()  # after a cancel: saves last.pt and marks the job cancelled
        if run.status != "finished":
            self.finished.emit(run.status, run.message)
            return
        if run.best.is_file() and not self._cancel.is_set():
            try:
                cmp = compare_models(run.config.base, run.best, held_out(run), run.config.device, progress=self.comparing.emit)
                self.compared.emit(cmp)
            except Exception as exc:
                self.finished.emit("failed", f"comparison failed: {exc}")
                return
        self.finished.emit(run.status, run.message)
