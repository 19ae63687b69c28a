"""MSFM inference without torch: the model's ONNX graphs, NumPy and OpenCV.

:class:`LitePredictor` computes what :class:`engine.infer.Predictor` computes on the CPU,
step for step (``MSFM.forward`` and ``Predictor._to_predictions``): the main stage, its
maps and object box, the look-closer crop, the object stage, the part windows and their
stage, the ensemble, the boxes in source pixels and the evidence map. The encoders are
the graphs :mod:`engine.model.ort` exported (the same ones the PyTorch predictor runs on
the CPU); everything around them is :mod:`engine.lite.ops`. A process that analyses with
it never imports torch (3 s of every start on a 2-core PC). ``tests/engine/test_lite.py``
holds its findings equal to the PyTorch predictor's on real radiographs and DICOM.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..evidence import EVIDENCE_STRIDE
from ..model.described import file_sha256
from ..model.preprocess import batch_array
from ..predicting import BasePredictor, assemble_predictions
from ..types import LoadedImage, ModelInfo, Prediction
from . import ops
from .cache import LiteModel, read_manifest, strides_needed

log = logging.getLogger(__name__)

#: Images per encoder run. One: on 2 cores ONNX Runtime's convolutions cost more per image
#: in a batch of 2 than alone (measured: 102 vs 88 ms per image through the whole predictor).
FORWARD_CHUNK = 1

#: Images analysed side by side in a batch (each lane with its own sessions of half the
#: cores): on 2 cores, two single-threaded lanes analyse 78 ms per image against 88 ms for
#: one two-threaded run (no synchronisation of a thread pool per layer, and one lane's NumPy
#: steps overlap the other's convolutions). A single image uses all cores in one session.
LANES = 2


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class LitePredictor(BasePredictor):
    """A cached model ready for CPU inference without torch (see the module docstring).

    Build it with :meth:`open`; ``threads`` is ONNX Runtime's thread count (None: the
    machine's cores). A batch of several images runs in :data:`LANES` lanes (threads with
    sessions of their own, ``threads // LANES`` threads each), a single image in one session
    with all ``threads``."""

    runtime = "lite"
    device = "cpu"

    def __init__(self, model: LiteModel, batch_size: int = 8, enforce_scope: bool = True, threads: int | None = None) -> None:
        self.model = model
        cfg = model.config
        self.info = ModelInfo(sha256=model.info.sha256, backbone=cfg.backbone, input_size=cfg.input_size, name=model.info.name)
        self.calibration = model.info.calibration
        self.batch_size = max(1, int(batch_size))
        self.enforce_scope = bool(enforce_scope)
        self.threads = threads
        self.geometry = ops.window_geometry(cfg.object_grid_size, cfg.object_window_scales)
        self.contrast = ops.abnormal_contrast(model.fc_weight, cfg.abnormal_index)
        self._sessions: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()
        self._lane = threading.local()
        self._pool: Any = None

    @classmethod
    def open(cls, checkpoint: str | Path, cache: Path | None = None, batch_size: int = 8, enforce_scope: bool = True) -> "LitePredictor | None":
        """The torch-free predictor of ``checkpoint``, its graphs opened, when its graphs and
        manifest are cached (written the first time a PyTorch predictor of it ran on the CPU
        with ONNX Runtime) and ONNX Runtime is installed; else None (logged when the cache
        was there but unusable)."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return None
        if cache is None:
            from ..resources import cache_dir

            cache = cache_dir() / "onnx"
        p = Path(checkpoint)
        if not p.is_file():
            return None
        model = read_manifest(cache, file_sha256(p))
        if model is None:
            return None
        predictor = cls(model, batch_size, enforce_scope)
        try:
            predictor.warm_up()
        except Exception as exc:  # noqa: BLE001  (a damaged graph: the PyTorch predictor exports it again)
            log.warning("cached graphs of %s unusable (%s); the PyTorch predictor will make them again", p.name, exc)
            return None
        return predictor

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def warm_up(self) -> None:
        """Open every graph's single-image session now (reading a graph takes a fraction of a
        second), not at the first image. The lanes' sessions open with the first batch."""
        for stride in strides_needed(self.config):
            self.session(stride)

    @property
    def cores(self) -> int:
        return max(1, self.threads or os.cpu_count() or 1)

    def lanes(self, n_images: int) -> int:
        """Lanes a batch of ``n_images`` runs in: one for a single image or a single core."""
        return max(1, min(LANES, n_images, self.cores))

    def session(self, output_stride: int, lane: int | None = None):
        """The ONNX Runtime session of the graph at ``output_stride``: lane None (a single
        image) uses all cores; lane k of a batch ``cores // LANES`` threads."""
        import onnxruntime as ort

        key = (output_stride, -1 if lane is None else lane)
        with self._lock:
            sess = self._sessions.get(key)
            if sess is None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.cores if lane is None else max(1, self.cores // LANES)
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3
                # A lane's workers sleep between runs instead of spinning: the other lane's NumPy
                # steps then keep their core (measured with chunks of 2: 10-15 ms less per image).
                # A single image runs alone: its workers spin, which saves the wake-up of each
                # layer (measured in rotation, 6 rounds: 100 vs 123 ms, and 97 vs 103 ms).
                # Spinning pays only with one session: a model whose stages run two graphs (output
                # stride 16) would have the idle session's spinning workers take the cores from the
                # running one (measured: 235 ms per image spinning, 150 not; spinning only while
                # a run lasts, `session.force_spinning_stop`, 215).
                spin = lane is None and len(self.model.graphs) == 1
                opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
                sess = self._sessions[key] = ort.InferenceSession(str(self.model.graphs[output_stride]), opts, providers=["CPUExecutionProvider"])
            return sess

    def encode(self, x01: np.ndarray, output_stride: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(B, 1, H, W) float32 in [0, 1] -> features (B, n, H/os, W/os), logits (B, K), in
        the calling lane's session."""
        feats, logits = self.session(output_stride, getattr(self._lane, "index", None)).run(None, {"x": np.ascontiguousarray(x01, np.float32)})
        return feats, logits

    # -- inference -------------------------------------------------------------------
    def _cell_lse(self, feats: np.ndarray) -> np.ndarray:
        """Logits of a stage whose cells are pooled by ``cell_pool="lse"``: (N, n, h, w) -> (N, 2)."""
        cfg, k = self.config, self.config.abnormal_index
        bias = self.model.fc_bias
        assert bias is not None  # read_manifest refuses an lse model without it
        return ops.cell_lse_logits(feats, self.contrast, float(bias[k] - bias[1 - k]), k, cfg.cell_pool_r)

    def predict_batch(self, images: Sequence[LoadedImage]) -> list[Prediction]:
        """Predictions for ``images`` (in their order), ``FORWARD_CHUNK`` at a time, in
        :meth:`lanes` lanes. No scope check here (callers check first, as with
        :meth:`engine.infer.Predictor.predict_batch`)."""
        chunks = [images[i:i + FORWARD_CHUNK] for i in range(0, len(images), FORWARD_CHUNK)]
        n_lanes = self.lanes(len(chunks))
        if n_lanes == 1:
            return [p for c in chunks for p in self._predict_chunk(c)]
        results: list[list[Prediction] | None] = [None] * len(chunks)
        todo = iter(range(len(chunks)))
        take = threading.Lock()
        failed = threading.Event()

        def lane(index: int) -> None:
            self._lane.index = index
            try:
                while not failed.is_set():
                    with take:
                        i = next(todo, None)
                    if i is None:
                        return
                    results[i] = self._predict_chunk(chunks[i])
            except BaseException:
                failed.set()  # the other lanes stop after their current image
                raise
            finally:
                self._lane.index = None

        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(LANES - 1, thread_name_prefix="msfm-lane")
        others = [self._pool.submit(lane, k) for k in range(1, n_lanes)]
        try:
            lane(0)  # the calling thread is the first lane
        finally:
            for f in others:  # every lane ends before an error is raised: none is left running
                f.exception()
        for f in others:
            f.result()
        return [p for r in results for p in r]  # type: ignore[union-attr]

    def forward(self, x: np.ndarray, sources: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """``MSFM.forward`` at inference: x (B, 1, S, S) in [0, 1]; ``sources`` the (H, W)
        full-resolution images when the crop is cut from them. Returns the fields of
        :class:`engine.model.msfm.MSFMOutput` as arrays (same names, same frames)."""
        cfg = self.config
        s, g, cs, go = cfg.input_size, cfg.grid_size, cfg.crop_size, cfg.object_grid_size
        b = x.shape[0]
        feats, main_logits = self.encode(x, 32)
        m_main = ops.class_map(feats, self.contrast)
        a, cfm, fw = ops.activation_maps(feats, self.model.fc_weight)
        grid_box, used_default = ops.object_grid_boxes(a, fw)
        object_box = (grid_box * np.float32(s / g)).astype(np.float32)
        if cfg.crop_from == "source" and sources is not None:
            crops = []
            for i, src in enumerate(sources):
                h, w = src.shape
                box = object_box[i] * np.array([w / s, h / s, w / s, h / s], np.float32)
                crops.append(ops.crop_resize(src, box, cs, cs, sampling_ratio=0))
        else:
            crops = [ops.crop_resize(x[i, 0], object_box[i], cs, cs, sampling_ratio=1) for i in range(b)]
        crop = np.stack(crops)[:, None]

        feats_o, object_logits = self.encode(crop, cfg.output_stride)
        if cfg.cell_pool == "lse":
            object_logits = self._cell_lse(feats_o)
        a_o = feats_o.sum(axis=1, dtype=np.float32)
        m_object = ops.class_map(feats_o, self.contrast)
        base = ops.window_rank_map(a_o, m_object, cfg.window_score)
        n_scales = len(cfg.object_windows_per_scale)
        maps = [base] * n_scales
        if cfg.lesion_windows and cfg.lesion_window_score not in (None, cfg.window_score):
            maps[-1] = ops.window_rank_map(a_o, m_object, str(cfg.lesion_window_score))
        win_grid, win_scores, win_scale = ops.select_windows(maps, self.geometry, cfg.object_windows_per_scale, cfg.nms_iou)
        windows = (win_grid * np.float32(cs / go)).astype(np.float32)
        p = windows.shape[1]
        # A scale whose NMS kept fewer windows than its slots repeats its last one (SPEC §3):
        # on validation radiographs 1.35 of the 7 windows per image are repeats. Each distinct
        # window of an image is cropped and encoded once; the repeats read its results.
        keys = np.concatenate([np.repeat(np.arange(b), p)[:, None].astype(np.float32), windows.reshape(b * p, 4)], axis=1)
        _, first, again = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        parts = np.stack([ops.crop_resize(crop[int(k) // p, 0], windows.reshape(b * p, 4)[k], cfg.part_size, cfg.part_size, sampling_ratio=1)
                          for k in first])[:, None]
        feats_u, logits_u = self.encode(parts, cfg.parts_stride)
        if cfg.cell_pool == "lse":
            logits_u = self._cell_lse(feats_u)
        again = again.reshape(-1)
        part_logits = logits_u[again]
        m_parts = ops.class_map(feats_u, self.contrast)[again]
        return {
            "main_logits": main_logits, "object_logits": object_logits, "part_logits": part_logits.reshape(b, p, -1),
            "a": a, "cfm": cfm, "fw": fw, "a_object": a_o, "object_box": object_box, "object_default": used_default,
            "windows": windows, "window_scores": win_scores, "window_scale": win_scale,
            "m_main": m_main, "m_object": m_object, "m_parts": m_parts.reshape(b, p, *m_parts.shape[-2:]),
        }

    def _predict_chunk(self, images: Sequence[LoadedImage]) -> list[Prediction]:
        cfg = self.config
        x = batch_array(images, cfg.input_size)
        sources = [im.pixels.astype(np.float32, copy=False) for im in images] if cfg.crop_from == "source" else None
        out = self.forward(x, sources)
        return assemble_predictions(images, *self._host(images, out), cfg, self.info)

    def _host(self, images: Sequence[LoadedImage], out: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[np.ndarray | None], np.ndarray]:
        """``Predictor._to_predictions`` up to :func:`assemble_predictions`: probabilities,
        the ensemble, boxes in source pixels (xyxy), the fused box and the evidence maps."""
        cfg = self.config
        k, s, cs = cfg.abnormal_index, cfg.input_size, cfg.crop_size
        p_main = _softmax(out["main_logits"])[:, k]
        p_obj = _softmax(out["object_logits"])[:, k]
        part_logits = out["part_logits"].astype(np.float32)
        p_parts_each = _softmax(part_logits)[..., k]
        n_paper = cfg.num_paper_windows
        if cfg.parts_pool == "lse":
            d = part_logits[:, :n_paper, k] - part_logits[:, :n_paper, 1 - k]
            pooled = ops.log_mean_exp(d, axis=1)
            p_parts = (1.0 / (1.0 + np.exp(-pooled))).astype(np.float32)  # the softmax of (0, pooled) at k
        else:
            p_parts = p_parts_each[:, :n_paper].mean(axis=1)
        w = np.asarray(cfg.ensemble_weights, np.float32)
        ensemble = (np.stack([p_main, p_obj, p_parts], axis=1) * (w / w.sum())).sum(axis=1)

        sizes = np.array([[im.width, im.height] * 2 for im in images], np.float32) / np.float32(s)  # (B, 4)
        obj_box = out["object_box"]
        scale = ((obj_box[:, 2:] - obj_box[:, :2]) / np.float32(cs))[:, None, :]
        win_input = np.concatenate([obj_box[:, None, :2], obj_box[:, None, :2]], axis=2) + out["windows"] * np.concatenate([scale, scale], axis=2)
        win_orig = (win_input * sizes[:, None, :]).astype(np.float32)
        obj_orig = (obj_box * sizes).astype(np.float32)
        scores = out["window_scores"].astype(np.float32)
        order = np.argsort(-scores[:, :n_paper], axis=1, kind="stable")
        wts = np.array([cfg.gamma**i for i in range(1, n_paper + 1)], np.float64)
        wts = (wts / wts.sum()).astype(np.float32)
        ranked = np.take_along_axis(win_orig[:, :n_paper], order[..., None], axis=1)
        fused = (ranked * wts[None, :, None]).sum(axis=1)
        evidence: list[np.ndarray | None] = [
            ops.evidence_map(out["m_main"][i], out["m_object"][i], out["m_parts"][i], obj_orig[i], win_orig[i], im.width, im.height, EVIDENCE_STRIDE)
            for i, im in enumerate(images)
        ]
        h = {
            "ens": ensemble, "main": p_main, "obj": p_obj, "parts": p_parts, "parts_each": p_parts_each,
            "obj_box": obj_orig, "win": win_orig, "scores": scores, "order": np.argsort(-scores, axis=1, kind="stable"),
            "fused": fused, "default": out["object_default"], "a": out["a"], "cfm": out["cfm"], "fw": out["fw"], "a_o": out["a_object"],
        }
        return h, evidence, out["window_scale"]


__all__ = ["FORWARD_CHUNK", "LitePredictor"]
