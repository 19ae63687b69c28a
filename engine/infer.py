"""Inference: ``predict(images) -> list[Prediction]`` (SPEC §3, §5).

Images are batched, run through MSFM under ``torch.inference_mode``, and every box is
mapped back to original image pixels (xyxy). Progress is reported as plain data by
:meth:`Predictor.iter_predict`, so the CLI and the desktop can show it and stop between
batches.

Every loaded image is checked against the model's intended use (:mod:`engine.scope`)
before the network sees it: out-of-scope images are reported, not predicted, unless the
predictor was built with ``enforce_scope=False`` (research use), in which case they are
predicted and each such :class:`Prediction` carries ``outside_intended_use``.
:meth:`Predictor.predict_batch` runs the network only; callers that use it directly
check first (:meth:`Predictor.triage` or :func:`engine.scope.check_scope`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .accel import amp_context, prepare_for_device, to_device
from .boxes import crop_to_parent, fuse_boxes, scale_to_original
from .config import ModelConfig
from .device import Device, resolve_device
from .errors import CheckpointError
from .evidence import evidence_maps
from .model.checkpoint import load_checkpoint, state_sha256
from .model.msfm import MSFM, MSFMOutput, bag_logits
from .model.preprocess import make_batch
from .predicting import (  # noqa: F401  (re-exported: engine.infer stays the public name)
    BasePredictor,
    ImageInput,
    Loader,
    LoadFailure,
    PredictProgress,
    assemble_predictions,
)
from .types import LoadedImage, ModelInfo, Prediction

log = logging.getLogger(__name__)

#: Images per network forward on the CPU (see :class:`Predictor`).
CPU_FORWARD_CHUNK = 2


def _need(t: torch.Tensor | None, name: str) -> torch.Tensor:
    if t is None:
        raise RuntimeError(f"the model's output lacks {name}: an inference forward returns every stage")
    return t


class Predictor(BasePredictor):
    """A model ready for inference on one device.

    Args:
        model: an :class:`MSFM` (moved to ``device`` and set to eval mode).
        info: identity of the model (hash, backbone, input size); derived if None.
        device: ``auto`` | ``cpu`` | ``cuda`` | a torch device.
        batch_size: images per forward pass.
        amp: on CUDA, run the network in bfloat16 (float16 where bf16 is missing); outputs
            are float32 either way. No effect on the CPU.
        forward_chunk: images per network forward inside a batch. None: the whole batch
            on CUDA, :data:`CPU_FORWARD_CHUNK` on the CPU, where oneDNN convolutions get
            slower per image as the batch grows (Lite0 at 448 px, measured: 197 ms per
            image in chunks of 2, 294 ms as one batch of 8).
        enforce_scope: True (the default): images outside the model's intended use
            (:func:`engine.scope.check_scope`) are reported and not predicted. False is the
            research override: they are predicted, and each such prediction carries the
            reason in ``outside_intended_use`` for every output to show.
    """

    def __init__(self, model: MSFM, info: ModelInfo | None = None, device: Device | torch.device = "auto", batch_size: int = 8, amp: bool = True,
                 forward_chunk: int | None = None, enforce_scope: bool = True) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        prepare_for_device(self.model, self.device)
        self.amp = amp
        self.forward_chunk = forward_chunk or (CPU_FORWARD_CHUNK if self.device.type == "cpu" else None)
        cfg = model.config
        self.info = info or ModelInfo(sha256=state_sha256(model), backbone=cfg.backbone, input_size=cfg.input_size)
        self.batch_size = max(1, int(batch_size))
        self.enforce_scope = bool(enforce_scope)
        self.calibration = None

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: Device = "auto", batch_size: int = 8, enforce_scope: bool = True,
                        runtime: Literal["auto", "torch", "onnx"] = "auto", amp: bool = True) -> "Predictor":
        """The predictor of a checkpoint file. ``runtime``: on the CPU, "auto" runs the
        encoder through ONNX Runtime when it is installed (same results within float
        rounding, about twice as fast; the graphs are cached in the user cache folder by the
        checkpoint's SHA-256), "torch" never does, "onnx" insists. On a GPU: PyTorch, in
        mixed precision unless ``amp`` is False (what measures a model: evaluation)."""
        dev = resolve_device(device)
        ck = load_checkpoint(path, dev)
        if ck.meta.get("kind") == "plain":
            # Its weights fill only the main stage; read as MSFM, the untrained object and part
            # stages would join the ensemble and give a plausible-looking but wrong result.
            raise CheckpointError(f"{path}: a plain-classifier checkpoint (a baseline, no object or part stages): analyse with an "
                                  "MSFM checkpoint; compare against this one with `msfm evaluate --baseline`")
        info = ModelInfo(sha256=ck.sha256, backbone=ck.config.backbone, input_size=ck.config.input_size, name=str(ck.meta.get("name", "MSFM")))
        predictor = cls(ck.model, info, dev, batch_size, amp=amp, enforce_scope=enforce_scope)
        predictor.calibration = ck.calibration  # operating points and map scale, for verdicts and overlays
        if dev.type == "cpu" and runtime != "torch":
            from .model import ort

            if ort.available():
                from .resources import cache_dir

                runner = ort.attach(predictor.model, ck.sha256, cache_dir() / "onnx", checkpoint=Path(path))
                predictor.runtime = "onnx"
                _cache_for_lite(runner, ck)
            elif runtime == "onnx":
                raise CheckpointError("runtime 'onnx' asked for, but onnxruntime and onnx are not installed")
        return predictor

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[LoadedImage]) -> list[Prediction]:
        """Predictions for ``images`` (at most a few dozen: they share memory), run through
        the network ``forward_chunk`` images at a time. No scope check here: callers that
        use this directly check first (:meth:`predict_checked`, :meth:`triage`)."""
        n = self.forward_chunk or len(images)
        if len(images) > n:
            return [p for i in range(0, len(images), n) for p in self._predict_chunk(images[i:i + n])]
        return self._predict_chunk(images)

    def _predict_chunk(self, images: Sequence[LoadedImage]) -> list[Prediction]:
        cfg = self.model.config
        x = to_device(make_batch(images, cfg.input_size), self.device)
        sources = None
        if cfg.crop_from == "source":
            sources = [torch.from_numpy(im.pixels)[None] for im in images]
        ctx, _ = amp_context(self.device, self.amp)
        with ctx:
            out = self.model(x, sources=sources)
        return self._to_predictions(images, out)

    # -- post-processing -------------------------------------------------------------
    def _to_predictions(self, images: Sequence[LoadedImage], out: MSFMOutput) -> list[Prediction]:
        # An inference forward fills every stage's output; bind them once, checked.
        object_box = _need(out.object_box, "object_box")
        window_boxes, window_scores, window_scale = _need(out.windows, "windows"), _need(out.window_scores, "window_scores"), _need(out.window_scale, "window_scale")
        object_default, a_main, a_object = _need(out.object_default, "object_default"), _need(out.a, "a"), _need(out.a_object, "a_object")
        cfm, fw = _need(out.cfm, "cfm"), _need(out.fw, "fw")
        cfg = self.model.config
        s = cfg.input_size
        widths = torch.tensor([im.width for im in images], device=object_box.device)
        heights = torch.tensor([im.height for im in images], device=object_box.device)
        p_main, p_obj, p_parts, p_parts_each, ensemble = stage_probabilities(out, cfg)
        n_paper = cfg.num_paper_windows

        win_input = crop_to_parent(window_boxes.float(), object_box.float(), cfg.crop_size)  # S x S input pixels
        win_orig = scale_to_original(win_input, s, widths, heights)
        obj_orig = scale_to_original(object_box.float(), s, widths, heights)
        fused = fuse_boxes(win_orig[:, :n_paper], window_scores[:, :n_paper].float(), cfg.gamma)
        order = torch.sort(window_scores.float(), dim=1, descending=True, stable=True).indices

        # Evidence map E per image (SPEC §3b), in source pixels; images differ in size, so
        # the maps travel flattened in one tensor and are cut apart on the host.
        flat_e = None
        e_shapes: list[tuple[int, int]] = []
        if out.m_main is not None and out.m_object is not None and out.m_parts is not None:
            es = evidence_maps(out.m_main, out.m_object, out.m_parts, obj_orig, win_orig,
                               [im.width for im in images], [im.height for im in images])
            e_shapes = [(int(e.shape[0]), int(e.shape[1])) for e in es]
            flat_e = torch.cat([e.reshape(-1) for e in es])

        # One device->host transfer for the whole batch.
        t = {
            "ens": ensemble, "main": p_main, "obj": p_obj, "parts": p_parts, "parts_each": p_parts_each,
            "obj_box": obj_orig, "win": win_orig, "scores": window_scores.float(), "order": order,
            "fused": fused, "default": object_default, "a": a_main, "cfm": cfm, "fw": fw, "a_o": a_object,
        }
        if flat_e is not None:
            t["e"] = flat_e
        h = {key: (v.detach().float() if v.is_floating_point() else v.detach()).to("cpu").numpy() for key, v in t.items()}
        e_host: list[np.ndarray | None] = [None] * len(images)
        if flat_e is not None:
            parts = np.split(h["e"], np.cumsum([a * b for a, b in e_shapes])[:-1])
            e_host = [p.reshape(shape).astype(np.float32) for p, shape in zip(parts, e_shapes)]
        return assemble_predictions(images, h, e_host, window_scale.to("cpu").numpy(), cfg, self.info)


def stage_probabilities(out: MSFMOutput, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Abnormal-class probabilities of a full forward's stages, before calibration.

    Returns (main, object, parts, parts_each, ensemble): (B,) each but ``parts_each`` (B, P),
    one per window slot; ``ensemble`` is the weighted mean of the three stages
    (``cfg.ensemble_weights``), the score the threshold is set on."""
    k = cfg.abnormal_index
    object_logits, part_logits = _need(out.object_logits, "object_logits"), _need(out.part_logits, "part_logits")
    p_main = out.main_logits.float().softmax(-1)[:, k]
    p_obj = object_logits.float().softmax(-1)[:, k]
    p_parts_each = part_logits.float().softmax(-1)[..., k]  # (B, P)
    # The parts probability and eq. 11 read the configured (paper) windows only, the first
    # num_paper_windows slots; lesion-sized windows (config.lesion_windows) feed E only.
    n_paper = cfg.num_paper_windows
    if cfg.parts_pool == "lse":
        p_parts = bag_logits(part_logits[:, :n_paper].float(), k).softmax(-1)[:, k]
    else:
        p_parts = p_parts_each[:, :n_paper].mean(dim=1)
    w = torch.tensor(cfg.ensemble_weights, dtype=torch.float32, device=p_main.device)
    ensemble = (torch.stack([p_main, p_obj, p_parts], dim=1) * (w / w.sum())).sum(dim=1)
    return p_main, p_obj, p_parts, p_parts_each, ensemble


def _cache_for_lite(runner, ck) -> None:  # engine.model.ort.OrtEncoder, engine.model.checkpoint.LoadedCheckpoint
    """Cache what the torch-free predictor (:mod:`engine.lite`) needs of this checkpoint:
    every encoder graph its inference runs (exported now, not at the first image) and the
    manifest beside them. Next time, the app analyses without importing torch."""
    from .lite import cache as lite_cache

    if lite_cache.unsupported(ck.config) is not None or lite_cache.manifest_path(runner.cache, ck.sha256).is_file():
        return
    for stride in lite_cache.strides_needed(ck.config):
        runner.session(stride)
    head = ck.model.backbone.fc
    fc = head.weight.detach().to("cpu", torch.float32).numpy()
    bias = None if head.bias is None else head.bias.detach().to("cpu", torch.float32).numpy()
    lite_cache.write_manifest(runner.cache, ck.sha256, ck.config, ck.meta, ck.meta.get("created"), fc, bias)


def predict(
    images: Iterable[ImageInput] | ImageInput,
    model: MSFM | str | Path,
    device: Device = "auto",
    batch_size: int = 8,
    on_error: Literal["raise", "skip"] = "raise",
    enforce_scope: bool = True,
) -> list[Prediction]:
    """Convenience wrapper: ``model`` is an :class:`MSFM` or a checkpoint path; see
    :meth:`Predictor.predict` (out-of-scope images are left out unless ``enforce_scope``
    is False)."""
    predictor = (Predictor(model, device=device, batch_size=batch_size, enforce_scope=enforce_scope) if isinstance(model, MSFM)
                 else Predictor.from_checkpoint(model, device, batch_size, enforce_scope=enforce_scope))
    return predictor.predict(images, on_error=on_error)
