"""What every predictor shares, without torch: loading inputs, the intended-use check,
progress as plain data, and turning a batch's host arrays into :class:`Prediction` s.

Two predictors run MSFM: :class:`engine.infer.Predictor` (PyTorch: the reference, every
device, training's evaluation) and :class:`engine.lite.LitePredictor` (the model's cached
ONNX graphs with NumPy and OpenCV around them: a CPU process that never imports torch).
Both hand :func:`assemble_predictions` the same arrays, so a finding reads the same
whichever computed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Union

import numpy as np

from .config import ModelConfig
from .errors import ImageLoadError
from .evidence import peak_and_box
from .io import load_images
from .model.calibration import Calibration
from .scope import OutOfScope, check_scope
from .types import LoadedImage, ModelInfo, Prediction, StageMaps, Window

ImageInput = Union[str, Path, LoadedImage, np.ndarray]
#: Turns a file into its frames; raises ImageLoadError. The default decodes in this process.
Loader = Callable[[Path], list[LoadedImage]]


@dataclass(frozen=True)
class LoadFailure:
    """An input that could not be read: its path and a one-line reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class PredictProgress:
    """One step of :meth:`Predictor.iter_predict`: results of the batch just finished, an
    unreadable input (``errors``) or images outside the model's intended use, which were
    not predicted (``out_of_scope``)."""

    done: int  # inputs handled so far (files, arrays)
    total: int | None  # inputs in all, when known
    predictions: list[Prediction] = field(default_factory=list)
    errors: list[LoadFailure] = field(default_factory=list)
    out_of_scope: list[OutOfScope] = field(default_factory=list)


class BasePredictor:
    """Input handling and the intended-use check around :meth:`predict_batch`, which a
    subclass provides (images in, one :class:`Prediction` each out)."""

    info: ModelInfo
    batch_size: int = 8
    enforce_scope: bool = True
    #: engine.model.calibration.Calibration of a model loaded from a checkpoint, else None.
    calibration: Calibration | None = None
    #: What runs the network: "torch", "onnx" (encoder in ONNX Runtime, the rest PyTorch) or
    #: "lite" (ONNX Runtime, NumPy and OpenCV; no torch).
    runtime: str = "torch"

    @property
    def config(self) -> ModelConfig:
        raise NotImplementedError

    def predict_batch(self, images: Sequence[LoadedImage]) -> list[Prediction]:
        raise NotImplementedError

    def predict(self, inputs: Iterable[ImageInput] | ImageInput, on_error: Literal["raise", "skip"] = "raise") -> list[Prediction]:
        """Predictions for every image (every frame of multi-frame DICOM) within the model's
        intended use, in input order; out-of-scope images are left out (use
        :meth:`iter_predict` for the reasons) unless ``enforce_scope`` is off.

        ``on_error="raise"`` raises :class:`ImageLoadError` for the first unreadable input;
        ``"skip"`` leaves it out (use :meth:`iter_predict` to get the reasons).
        """
        out: list[Prediction] = []
        for step in self.iter_predict(inputs):
            if step.errors and on_error == "raise":
                e = step.errors[0]
                raise ImageLoadError(e.path, e.reason)
            out.extend(step.predictions)
        return out

    def triage(self, images: Sequence[LoadedImage]) -> tuple[list[tuple[LoadedImage, str | None]], list[OutOfScope]]:
        """Check ``images`` against the intended use: returns the ones to predict, each with
        None or (research override) the reason it is out of scope, and the refused ones."""
        run: list[tuple[LoadedImage, str | None]] = []
        refused: list[OutOfScope] = []
        for im in images:
            reason = check_scope(im)
            if reason is not None and self.enforce_scope:
                refused.append(OutOfScope.of(im, reason))
            else:
                run.append((im, reason))
        return run, refused

    def predict_checked(self, images: Sequence[LoadedImage]) -> tuple[list[Prediction], list[OutOfScope]]:
        """:meth:`predict_batch` behind the scope check: predictions of the images within
        the intended use (all of them, marked, without ``enforce_scope``) and the refused."""
        run, refused = self.triage(images)
        return self.predict_marked(run), refused

    def iter_predict(self, inputs: Iterable[ImageInput] | ImageInput, loader: Loader | None = None, batch_size: int | None = None) -> Iterator[PredictProgress]:
        """Load, check and predict batch by batch, yielding a :class:`PredictProgress`
        after each batch, after each unreadable input and after each input with frames
        outside the model's intended use. Stop iterating to cancel.

        ``loader`` decodes file inputs (default :func:`engine.io.load_images`); the desktop
        passes one that decodes in a child process, because some DICOM decoders hold the
        GIL for 100+ ms and would stall its event loop. ``batch_size`` overrides the
        predictor's for this call."""
        bs = max(1, int(batch_size or self.batch_size))
        if isinstance(inputs, (str, Path, LoadedImage, np.ndarray)):
            inputs = [inputs]
        total = len(inputs) if isinstance(inputs, Sequence) else None
        pending: list[tuple[LoadedImage, str | None]] = []
        done = 0
        for item in inputs:
            done += 1
            try:
                frames = self._load(item, loader)
            except ImageLoadError as exc:
                yield PredictProgress(done, total, errors=[LoadFailure(str(exc.path), exc.reason)])
                continue
            run, refused = self.triage(frames)
            pending.extend(run)
            if refused:
                # The input is finished unless some of its frames still wait for a batch.
                yield PredictProgress(done - (1 if run else 0), total, out_of_scope=refused)
            while len(pending) >= bs:
                batch, pending = pending[:bs], pending[bs:]
                yield PredictProgress(done - (1 if pending else 0), total, predictions=self.predict_marked(batch))
        if pending:
            yield PredictProgress(done, total, predictions=self.predict_marked(pending))

    def predict_marked(self, batch: Sequence[tuple[LoadedImage, str | None]]) -> list[Prediction]:
        """:meth:`predict_batch` on ``(image, reason)`` pairs (as :meth:`triage` gives them):
        each prediction carries its image's out-of-scope reason, None when in scope."""
        if not batch:
            return []
        preds = self.predict_batch([im for im, _ in batch])
        return [replace(p, outside_intended_use=reason) for p, (_, reason) in zip(preds, batch)]

    @staticmethod
    def _load(item: ImageInput, loader: Loader | None = None) -> list[LoadedImage]:
        if isinstance(item, LoadedImage):
            return [item]
        if isinstance(item, np.ndarray):
            if item.ndim != 2 or item.size == 0:
                raise ImageLoadError("<array>", f"expected a non-empty 2-D array, got shape {item.shape}")
            arr = item.astype(np.float32)
            return [LoadedImage(pixels=np.clip(arr, 0.0, 1.0))]
        return (loader or load_images)(Path(item))


def assemble_predictions(images: Sequence[LoadedImage], h: Mapping[str, np.ndarray], evidence: Sequence[np.ndarray | None],
                         scale_ids: np.ndarray, cfg: ModelConfig, info: ModelInfo) -> list[Prediction]:
    """One :class:`Prediction` per image from a batch's host arrays (B = len(images)).

    Args:
        h: ``ens``, ``main``, ``obj``, ``parts`` (B,) probabilities; ``parts_each`` (B, P);
            ``obj_box`` (B, 4), ``win`` (B, P, 4) and ``fused`` (B, 4) xyxy pixels of each
            original image; ``scores`` (B, P) window scores; ``order`` (B, P) windows by
            decreasing score; ``default`` (B,) bool; maps ``a`` (B, g, g), ``cfm`` (B, K, g, g),
            ``fw`` (B, g, g), ``a_o`` (B, go, go).
        evidence: each image's evidence map (He, We) or None.
        scale_ids: (P,) 0-based scale of each window slot.
    """
    k = cfg.abnormal_index
    preds = []
    for i, im in enumerate(images):
        windows = [
            Window(box=tuple(float(v) for v in h["win"][i, j]), score=float(h["scores"][i, j]), scale=int(scale_ids[j]) + 1)  # type: ignore[arg-type]
            for j in h["order"][i]
        ]
        e = evidence[i]
        maps = StageMaps(
            a=h["a"][i].astype(np.float32), cfm=h["cfm"][i].astype(np.float32), cam=h["cfm"][i, k].astype(np.float32),
            fw=h["fw"][i].astype(np.float32), a_object=h["a_o"][i].astype(np.float32), evidence=e,
        )
        peak = lesion = e_max = None
        if e is not None:
            peak, lesion, e_max = peak_and_box(e, im.width, im.height, cfg.lesion_tau)
        prob = float(h["ens"][i])
        preds.append(
            Prediction(
                file=str(im.source) if im.source is not None else "<array>",
                width=im.width, height=im.height,
                probability=prob, label=int(prob >= cfg.threshold), threshold=float(cfg.threshold),
                stages={"main": float(h["main"][i]), "object": float(h["obj"][i]), "parts": float(h["parts"][i])},
                part_probabilities=tuple(float(v) for v in h["parts_each"][i]),
                object_box=tuple(float(v) for v in h["obj_box"][i]),  # type: ignore[arg-type]
                object_box_is_default=bool(h["default"][i]),
                windows=windows,
                fused_box=tuple(float(v) for v in h["fused"][i]),  # type: ignore[arg-type]
                maps=maps, model=info, frame=im.frame, meta=dict(im.meta),
                peak=peak, lesion_box=lesion, evidence_max=e_max,
            )
        )
    return preds


__all__ = ["BasePredictor", "ImageInput", "LoadFailure", "Loader", "PredictProgress", "assemble_predictions"]
