"""The analysis controller: the one path from *Analyse* to a result the window draws.

``Analyse`` (Ctrl+R) -> :meth:`AnalysisController.analyse_image` -> one
:class:`~msfm_desktop.workers.Task` -> one engine call
(:meth:`engine.infer.Predictor.predict_batch` on the image the viewer already decoded:
:meth:`engine.types.LoadedImage.for_model` gives the model's input from the same
decode) -> :attr:`AnalysisController.analysed` with an :class:`Analysed` -> the window
stores it under its image and draws it. The study run is the same with
:meth:`~engine.infer.Predictor.iter_predict`, whose steps arrive as
:attr:`AnalysisController.study_step`.

The controller owns the loaded models (:class:`PredictorCache`, least recently used
beyond two is dropped) and the running analyses; it knows nothing of widgets. Every
signal carries the token of the study it was started for, so the window can drop a
result of a study it has since replaced.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from engine.types import LoadedImage

from .workers import Task, run_task, stop_task, warm_up_engine

#: Models kept loaded: the active one and the one before it (a comparison, a switch back).
PREDICTOR_CACHE_SIZE = 2


class PredictorCache:
    """Loaded :class:`engine.infer.Predictor` s by checkpoint file and device, built once
    (0.5 s) and shared by the image and study analyses: inference only reads the model,
    so concurrent use is safe. Keyed by the file's size and mtime too, so a file replaced
    at the same path is loaded afresh. Thread-safe."""

    def __init__(self, size: int = PREDICTOR_CACHE_SIZE) -> None:
        self.size = size
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint: str | Path, device: str, enforce_scope: bool = True, lite_only: bool = False):
        """The predictor of ``checkpoint`` on ``device``; ``enforce_scope=False`` is the
        research-use variant (no intended-use check) sharing the same loaded model. The
        torch-free one (:func:`_lite_predictor`) where it can run; ``lite_only``: that one
        or None (nothing built)."""
        checkpoint = Path(checkpoint)
        st = checkpoint.stat() if checkpoint.exists() else None
        key = (str(checkpoint), st and st.st_size, st and st.st_mtime_ns, device)
        with self._lock:
            predictor = self._models.get(key)
            if predictor is None:
                predictor = _lite_predictor(checkpoint, device)
                if predictor is None:
                    if lite_only:
                        return None
                    from engine.infer import Predictor

                    predictor = Predictor.from_checkpoint(checkpoint, device, enforce_scope=True)
                self._models[key] = predictor
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
        if enforce_scope:
            return predictor
        research = copy.copy(predictor)  # the same model and weights, without the intended-use check
        research.enforce_scope = False
        return research

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@dataclass(frozen=True)
class Analysed:
    """The answer for one image: ``result`` is a :class:`engine.types.Prediction`, an
    :class:`~msfm_desktop.session.OutOfScopeResult` or the exception that stopped it;
    ``device`` is where the model ran ("" when it did not)."""

    token: int
    ref: Any  # msfm_desktop.session.ImageRef
    result: object
    device: str = ""


def analyse_one(cache: PredictorCache, checkpoint: Path, image: LoadedImage, device: str, research: bool) -> tuple[object, str]:
    """The task body of one image (worker thread): the intended-use check, then the model
    on the pixels already decoded. Returns (result, device)."""
    from engine.scope import check_scope

    from .session import OutOfScopeResult

    image = image.for_model()
    reason = check_scope(image)
    if reason is not None and not research:
        return OutOfScopeResult(reason), ""
    predictor = cache.get(checkpoint, device)
    result = predictor.predict_batch([image])[0]
    if reason is not None:
        result = replace(result, outside_intended_use=reason)
    return result, str(predictor.device) + (" with ONNX Runtime" if predictor.runtime in ("onnx", "lite") else "")


def analyse_files(cache: PredictorCache, checkpoint: Path, paths: Sequence[Path], device: str, batch_size: int, research: bool):
    """The task body of a study (worker thread): :meth:`Predictor.iter_predict`'s steps,
    decoded by the desktop's decoder process."""
    from .decoder import shared_pool

    predictor = cache.get(checkpoint, device, enforce_scope=not research)
    yield from predictor.iter_predict(paths, loader=shared_pool().load_images, batch_size=batch_size)


def _lite_predictor(checkpoint: Path, device: str):
    """The torch-free predictor (:class:`engine.lite.LitePredictor`) of ``checkpoint`` when
    the analysis runs on the CPU and the model's graphs are cached (every start after the
    model's first use): analysing then imports no torch, 3 s of a start here. None otherwise."""
    from engine.device import cuda_possible
    from engine.lite import LitePredictor

    if device == "cpu" or (device == "auto" and not cuda_possible()):
        return LitePredictor.open(checkpoint)  # its graphs opened, or None
    return None


def _preload(cache: PredictorCache, checkpoint: Path | None, device: str) -> None:
    if checkpoint is not None and cache.get(checkpoint, device, lite_only=True) is not None:
        return  # no torch needed until fine-tuning or a comparison asks for it: no warm-up
    warm_up_engine()
    if checkpoint is not None:
        cache.get(checkpoint, device)


class AnalysisController(QObject):
    """Runs analyses (one image at a time, one study at a time) and says what came out."""

    analysed = Signal(object)  # Analysed
    study_step = Signal(int, object)  # token, engine.infer.PredictProgress (done, total, predictions, errors, out_of_scope)
    study_failed = Signal(int, str)  # token, why the run could not go on
    study_done = Signal(int, bool)  # token, cancelled

    def __init__(self, parent: QObject | None = None, cache: PredictorCache | None = None) -> None:
        super().__init__(parent)
        self.cache = cache if cache is not None else PredictorCache()
        self._image: Task | None = None
        self._study: Task | None = None
        self._preload: Task | None = None

    def preload(self, checkpoint: str | Path | None, device: str = "auto") -> None:
        """In the background: the engine's one-time costs (:func:`~msfm_desktop.workers.warm_up_engine`),
        then the predictor of ``checkpoint`` (None: no model to load), so that the first
        analysis finds it ready (at launch: while the study is indexed and its first image
        decoded in the decoder process). An analysis asking for it meanwhile waits for this
        build (the cache's lock) instead of building it twice. A failure is left for that
        analysis to report."""
        if self._preload is None or not self._preload.running():
            self._preload = run_task(_preload, self.cache, None if checkpoint is None else Path(checkpoint), device, errored=lambda exc: None)

    # ----- one image
    def analyse_image(self, checkpoint: str | Path, image: LoadedImage, ref, token: int, device: str = "auto",
                      research: bool = False) -> bool:
        """Start the analysis of the decoded ``image`` (shown as ``ref``); False while one runs."""
        if self.image_busy():
            return False

        def done(out: tuple[object, str]) -> None:
            self.analysed.emit(Analysed(token, ref, *out))

        def failed(exc: Exception) -> None:  # a bad checkpoint or device must not crash the UI
            self.analysed.emit(Analysed(token, ref, exc))

        self._image = run_task(analyse_one, self.cache, Path(checkpoint), image, device, research, returned=done, errored=failed)
        return True

    def image_busy(self) -> bool:
        return self._image is not None and self._image.running()

    # ----- a study
    def analyse_study(self, checkpoint: str | Path, paths: Sequence[str | Path], token: int, device: str = "auto",
                      research: bool = False, batch_size: int = 2) -> bool:
        """Start the analysis of ``paths``; False while a study analysis runs."""
        if self.study_busy():
            return False
        task = Task(analyse_files, self.cache, Path(checkpoint), [Path(p) for p in paths], device, batch_size, research)
        task.yielded.connect(lambda step: self.study_step.emit(token, step))
        task.errored.connect(lambda exc: self.study_failed.emit(token, f"analysis failed: {type(exc).__name__}: {exc}"))
        task.finished.connect(lambda: self.study_done.emit(token, task.was_cancelled))
        self._study = task
        task.start()
        return True

    def study_busy(self) -> bool:
        return self._study is not None and self._study.running()

    def cancel_study(self) -> None:
        """The study run stops after the batch in progress."""
        if self._study is not None:
            self._study.cancel()

    def stop(self) -> None:
        """Cancel and join both analyses and a model build (the window is closing)."""
        stop_task(self._study)
        for task in (self._image, self._preload):
            if task is not None:
                task.wait()


__all__ = ["Analysed", "AnalysisController", "PREDICTOR_CACHE_SIZE", "PredictorCache", "analyse_files", "analyse_one"]
