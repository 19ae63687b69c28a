"""Background workers: long engine calls run in a QThread and report through signals.

The engine reports progress as plain data and polls a cancel callable; these wrappers
turn that into Qt signals, so the UI thread only ever receives results.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.study import StudyIndex, index_study


class ScanWorker(QObject):
    """Indexes study paths (:func:`engine.study.index_study`) off the UI thread."""

    progress = Signal(int, int, str)  # done, total, latest path
    finished = Signal(object)  # StudyIndex (partial, with ``cancelled`` set, after cancel)

    def __init__(self, paths: Sequence[str | Path]) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Thread-safe: the scan stops before its next file."""
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        try:
            index = index_study(self.paths, progress=lambda p: self.progress.emit(p.done, p.total, p.path), cancel=self._cancel.is_set)
        except Exception as exc:  # never let a scan take the app down; say what happened
            from engine.study import ScanProblem

            index = StudyIndex(problems=[ScanProblem(self.paths[0] if self.paths else Path("."), f"scan failed: {type(exc).__name__}: {exc}")])
        self.finished.emit(index)


def start_in_thread(worker: QObject, parent: QObject) -> QThread:
    """Move ``worker`` to a new QThread, run its ``run`` slot there, and clean both up
    when it emits ``finished``."""
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread


class LoadWorker(QObject):
    """Decodes one image (any transfer syntax) off the UI thread."""

    finished = Signal(object, object)  # path, LoadedImage or an ImageLoadError

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    @Slot()
    def run(self) -> None:
        from engine.errors import ImageLoadError
        from engine.io import load_image

        try:
            result: object = load_image(self.path)
        except ImageLoadError as exc:
            result = exc
        except Exception as exc:  # report, never crash the UI
            result = ImageLoadError(self.path, f"{type(exc).__name__}: {exc}")
        self.finished.emit(self.path, result)


class AnalyseWorker(QObject):
    """Runs MSFM on one decoded image off the UI thread; the predictor is built once per
    checkpoint and device and reused."""

    finished = Signal(object, object)  # path, Prediction or an exception

    _cache: dict[tuple[str, str], object] = {}

    def __init__(self, checkpoint: str | Path, image, device: str = "auto") -> None:
        super().__init__()
        self.checkpoint, self.image, self.device = Path(checkpoint), image, device

    @Slot()
    def run(self) -> None:
        from engine.infer import Predictor

        try:
            key = (str(self.checkpoint), self.device)
            predictor = AnalyseWorker._cache.get(key)
            if predictor is None:
                predictor = AnalyseWorker._cache[key] = Predictor.from_checkpoint(self.checkpoint, self.device)
            result: object = predictor.predict_batch([self.image])[0]
        except Exception as exc:  # a bad checkpoint or device must not crash the UI
            result = exc
        self.finished.emit(self.image.source, result)


class StudyAnalyseWorker(QObject):
    """Batched MSFM over a list of files (:meth:`Predictor.iter_predict`) off the UI thread.

    ``batch`` carries each finished batch (predictions, load failures) as it comes, so the
    study table fills while the rest runs; ``finished`` says whether it was cancelled.
    """

    progress = Signal(int, int)  # done, total
    batch = Signal(object, object)  # list[Prediction], list[LoadFailure]
    finished = Signal(bool)  # cancelled

    def __init__(self, checkpoint: str | Path, paths: Sequence[str | Path], device: str = "auto", batch_size: int = 8) -> None:
        super().__init__()
        self.checkpoint, self.paths, self.device, self.batch_size = Path(checkpoint), [Path(p) for p in paths], device, batch_size
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        from engine.infer import LoadFailure, Predictor

        cancelled = False
        try:
            predictor = Predictor.from_checkpoint(self.checkpoint, self.device, self.batch_size)
            for step in predictor.iter_predict(self.paths):
                self.batch.emit(step.predictions, step.errors)
                self.progress.emit(step.done, step.total or len(self.paths))
                if self._cancel.is_set():
                    cancelled = True
                    break
        except Exception as exc:  # a bad checkpoint must not crash the UI
            self.batch.emit([], [LoadFailure(str(self.checkpoint), f"analysis failed: {type(exc).__name__}: {exc}")])
        self.finished.emit(cancelled)
