"""Background workers: long engine calls run in a QThread and report through signals.

The engine reports progress as plain data and polls a cancel callable; these wrappers
turn that into Qt signals, so the UI thread only ever receives results. Connect their
signals to bound methods of objects that live in the UI thread (queued connections):
PySide6 calls a lambda slot directly in the worker thread, and widgets touched from
there crash the application.
"""

from __future__ import annotations

import gc
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


_warm = False


def warm_up_engine() -> None:
    """Pay the engine's one-time costs on the UI thread before the window shows (once per
    process): importing the model code and timm (the backbones import it lazily), torch's
    first ``torch.load`` (it initialises its pytree registry), the ImageNet Lite0 weights
    every FMA network starts from (a legacy pickle), and a full garbage collection. Each
    holds the GIL: measured, each stalled the event loop by 140–220 ms when it happened
    in a worker. Afterwards a model loads in a worker with no stall above ~20 ms
    (``benchmarks/ui_responsiveness.py``)."""
    global _warm
    if _warm:
        return
    _warm = True
    import importlib
    import io

    import torch

    from engine.model.backbones import load_lite0_imagenet_state

    for module in ("timm", "engine.infer"):
        importlib.import_module(module)

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)
    load_lite0_imagenet_state()
    # A full collection walks every live object with the GIL held: with torch, Qt and
    # pyqtgraph loaded that is 150-200 ms, and building a model allocates enough to set
    # one off in a worker. Objects alive now live as long as the app; freezing them
    # keeps later collections short.
    gc.collect()
    gc.freeze()


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


class CallWorker(QObject):
    """Runs one blocking call off the UI thread; ``finished`` carries its result or the
    exception it raised."""

    finished = Signal(object)

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # reported to the caller, never raised in the thread
            result = exc
        self.finished.emit(result)


class LoadWorker(QObject):
    """Decodes one image (any transfer syntax) for display off the UI thread: DICOM
    without its VOI LUT, so the viewer can offer every header window."""

    finished = Signal(object, object)  # path, LoadedImage or an ImageLoadError

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)

    @Slot()
    def run(self) -> None:
        from engine.errors import ImageLoadError

        from .decoder import shared_pool

        try:
            result: object = shared_pool().load_image(self.path, apply_voi=False)
        except ImageLoadError as exc:
            result = exc
        except Exception as exc:  # report, never crash the UI
            result = ImageLoadError(self.path, f"{type(exc).__name__}: {exc}")
        self.finished.emit(self.path, result)


_predictors: dict[tuple, object] = {}
_predictors_lock = threading.Lock()


def get_predictor(checkpoint: Path, device: str):
    """The :class:`engine.infer.Predictor` for a checkpoint file and device, built once
    (0.5 s) and shared by the image and study workers: inference only reads the model,
    so concurrent use is safe. Keyed by the file's size and mtime too, so a file replaced
    at the same path is loaded afresh."""
    from engine.infer import Predictor

    st = checkpoint.stat() if checkpoint.exists() else None
    key = (str(checkpoint), st and st.st_size, st and st.st_mtime_ns, device)
    with _predictors_lock:
        predictor = _predictors.get(key)
        if predictor is None:
            predictor = _predictors[key] = Predictor.from_checkpoint(checkpoint, device)
        return predictor


class AnalyseWorker(QObject):
    """Runs MSFM on one decoded image off the UI thread (:func:`get_predictor`)."""

    finished = Signal(object, object, object)  # path, Prediction or an exception, {"device", "threshold"}

    def __init__(self, checkpoint: str | Path, image, device: str = "auto") -> None:
        super().__init__()
        self.checkpoint, self.image, self.device = Path(checkpoint), image, device

    @Slot()
    def run(self) -> None:
        try:
            predictor = get_predictor(self.checkpoint, self.device)
            image = self.image
            if image.kind == "dicom" and image.source is not None:
                # The viewer's copy skipped the VOI LUT; the model sees the file as the CLI does.
                from .decoder import shared_pool

                image = shared_pool().load_image(image.source, image.frame or 0)
            result: object = predictor.predict_batch([image])[0]
            info = {"device": str(predictor.device), "threshold": float(predictor.model.config.threshold)}
        except Exception as exc:  # a bad checkpoint or device must not crash the UI
            result, info = exc, {}
        self.finished.emit(self.image.source, result, info)


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
        from engine.infer import LoadFailure

        from .decoder import shared_pool

        cancelled = False
        try:
            predictor = get_predictor(self.checkpoint, self.device)
            for step in predictor.iter_predict(self.paths, loader=shared_pool().load_images, batch_size=self.batch_size):
                self.batch.emit(step.predictions, step.errors)
                self.progress.emit(step.done, step.total or len(self.paths))
                if self._cancel.is_set():
                    cancelled = True
                    break
        except Exception as exc:  # a bad checkpoint must not crash the UI
            self.batch.emit([], [LoadFailure(str(self.checkpoint), f"analysis failed: {type(exc).__name__}: {exc}")])
        self.finished.emit(cancelled)
