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
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.io.study import StudyIndex, index_study


class ScanWorker(QObject):
    """Indexes study paths (:func:`engine.io.study.index_study`) off the UI thread."""

    progress = Signal(int, int, str)  # done, total, latest path
    finished = Signal(int, object)  # token, StudyIndex (partial, with ``cancelled`` set, after cancel)

    def __init__(self, paths: Sequence[str | Path], token: int = 0) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self.token = token
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Thread-safe: the scan stops before its next file."""
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        try:
            index = index_study(self.paths, progress=lambda p: self.progress.emit(p.done, p.total, p.path), cancel=self._cancel.is_set)
        except Exception as exc:  # never let a scan take the app down; say what happened
            from engine.io.study import ScanProblem

            index = StudyIndex(problems=[ScanProblem(self.paths[0] if self.paths else Path("."), f"scan failed: {type(exc).__name__}: {exc}")])
        self.finished.emit(self.token, index)


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


def stop_worker(worker, thread: QThread | None) -> None:
    """Ask ``worker`` (if any) to stop and wait for its thread: a dialog or panel closing
    never leaves a thread running behind it."""
    if worker is not None:
        worker.cancel()
    if thread is not None:
        thread.quit()
        thread.wait()


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
    """Decodes one image (one frame of a multi-frame file) for display off the UI thread:
    DICOM without its VOI LUT, so the viewer can offer every header window. ``token`` is
    the open study's, so a result that arrives after the user opened something else is
    recognised and dropped."""

    finished = Signal(int, object, object, object)  # token, path, frame (or None), LoadedImage or an ImageLoadError

    def __init__(self, path: str | Path, frame: int | None = None, token: int = 0) -> None:
        super().__init__()
        self.path, self.frame, self.token = Path(path), frame, token

    @Slot()
    def run(self) -> None:
        from engine.errors import ImageLoadError

        from .decoder import shared_pool

        try:
            result: object = shared_pool().load_image(self.path, self.frame or 0, apply_voi=False)
        except ImageLoadError as exc:
            result = exc
        except Exception as exc:  # report, never crash the UI
            result = ImageLoadError(self.path, f"{type(exc).__name__}: {exc}")
        self.finished.emit(self.token, self.path, self.frame, result)


#: Models kept loaded: the active one and the one before it (a comparison, a switch back).
#: A model switch no longer keeps every earlier model in memory.
PREDICTOR_CACHE_SIZE = 2
_predictors: "OrderedDict[tuple, object]" = OrderedDict()
_predictors_lock = threading.Lock()


def get_predictor(checkpoint: Path, device: str, enforce_scope: bool = True):
    """The :class:`engine.infer.Predictor` for a checkpoint file and device, built once
    (0.5 s) and shared by the image and study workers: inference only reads the model,
    so concurrent use is safe. Keyed by the file's size and mtime too, so a file replaced
    at the same path is loaded afresh. The research-use variant (no intended-use check)
    shares the loaded model. The least recently used model beyond
    :data:`PREDICTOR_CACHE_SIZE` is dropped."""
    import copy

    from engine.infer import Predictor

    st = checkpoint.stat() if checkpoint.exists() else None
    key = (str(checkpoint), st and st.st_size, st and st.st_mtime_ns, device)
    with _predictors_lock:
        predictor = _predictors.get(key)
        if predictor is None:
            predictor = _predictors[key] = Predictor.from_checkpoint(checkpoint, device, enforce_scope=True)
            while len(_predictors) > PREDICTOR_CACHE_SIZE:
                _predictors.popitem(last=False)
        _predictors.move_to_end(key)
    if enforce_scope:
        return predictor
    research = copy.copy(predictor)  # the same model and weights, without the intended-use check
    research.enforce_scope = False
    return research


def cached_predictors() -> int:
    """How many models the cache holds (for tests and the About box)."""
    with _predictors_lock:
        return len(_predictors)


class AnalyseWorker(QObject):
    """Runs MSFM on one decoded image off the UI thread (:func:`get_predictor`), after the
    intended-use check: an image outside it comes back as an
    :class:`~msfm_desktop.session.OutOfScopeResult` unless ``research`` is set, in which
    case the prediction carries the reason and is marked research use only."""

    finished = Signal(int, object, object, object)  # token, ImageRef, Prediction | OutOfScopeResult | exception, {"device"}

    def __init__(self, checkpoint: str | Path, image, device: str = "auto", token: int = 0, ref=None, research: bool = False) -> None:
        super().__init__()
        self.checkpoint, self.image, self.device, self.token, self.ref, self.research = Path(checkpoint), image, device, token, ref, research

    @Slot()
    def run(self) -> None:
        from dataclasses import replace

        from engine.scope import check_scope

        from .session import OutOfScopeResult

        info: dict = {}
        try:
            image = self.image
            if image.kind == "dicom" and image.source is not None:
                # The viewer's copy skipped the VOI LUT; the model sees the file as the CLI does.
                from .decoder import shared_pool

                image = shared_pool().load_image(image.source, image.frame or 0)
            reason = check_scope(image)
            if reason is not None and not self.research:
                result: object = OutOfScopeResult(reason)
            else:
                predictor = get_predictor(self.checkpoint, self.device)
                result = predictor.predict_batch([image])[0]
                if reason is not None:
                    result = replace(result, outside_intended_use=reason)
                info = {"device": str(predictor.device)}
        except Exception as exc:  # a bad checkpoint or device must not crash the UI
            result = exc
        self.finished.emit(self.token, self.ref, result, info)


class StudyAnalyseWorker(QObject):
    """MSFM over a list of files (:meth:`Predictor.iter_predict`) off the UI thread.

    ``batch`` carries each finished batch (predictions, load failures, images outside the
    intended use) as it comes, so the study table fills while the rest runs; ``progress``
    counts files; ``finished`` says whether it was cancelled. Every signal carries the
    open study's ``token``.
    """

    progress = Signal(int, int, int)  # token, done, total
    batch = Signal(int, object, object, object)  # token, list[Prediction], list[LoadFailure], list[OutOfScope]
    finished = Signal(int, bool)  # token, cancelled

    def __init__(self, checkpoint: str | Path, paths: Sequence[str | Path], device: str = "auto", batch_size: int = 2, token: int = 0,
                 research: bool = False) -> None:
        super().__init__()
        self.checkpoint, self.paths, self.device, self.batch_size = Path(checkpoint), [Path(p) for p in paths], device, batch_size
        self.token, self.research = token, research
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        from engine.infer import LoadFailure

        from .decoder import shared_pool

        cancelled = False
        try:
            predictor = get_predictor(self.checkpoint, self.device, enforce_scope=not self.research)
            steps = predictor.iter_predict(self.paths, loader=shared_pool().load_images, batch_size=self.batch_size)
            for step in steps:
                self.batch.emit(self.token, step.predictions, step.errors, list(step.out_of_scope))
                self.progress.emit(self.token, step.done, step.total or len(self.paths))
                if self._cancel.is_set():
                    cancelled = True
                    break
        except Exception as exc:  # a bad checkpoint must not crash the UI
            self.batch.emit(self.token, [], [LoadFailure(str(self.checkpoint), f"analysis failed: {type(exc).__name__}: {exc}")], [])
        self.finished.emit(self.token, cancelled)
