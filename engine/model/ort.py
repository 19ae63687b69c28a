"""The frozen encoder run by ONNX Runtime on the CPU (inference only).

The network forwards are nearly all of a CPU prediction's time, and ONNX Runtime runs
this model's encoder about twice as fast as PyTorch eager on the same cores
(``benchmarks/bench_onnx.py``). So at inference on the CPU the shared encoder + FC
(:meth:`engine.model.backbones.Backbone.forward`: ``(F, logits)``) of every stage is run
by ONNX Runtime, when it is installed; everything around it (FMA, look-closer crop,
window choice, the evidence map) stays PyTorch. PyTorch remains the reference path and
the only training path.

One graph per output stride (the main stage at 32, a dilated stage at 16), batch and
image size dynamic, exported from the loaded weights on first use (about a second per
graph) and cached as ``<cache>/<sha256>-os<stride>.onnx`` keyed by the weights' SHA-256,
so a model is exported once per installation. Graphs are written atomically; a cache
file that cannot be read is exported again.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..atomic import write_bytes_atomic

log = logging.getLogger(__name__)

#: ONNX opset of the exported graphs.
OPSET = 17
#: Export a missing graph in a spawned child process instead of this one (the desktop sets
#: it: tracing and exporting hold the GIL for seconds, which would freeze the window once
#: per model). Needs the checkpoint file the model came from.
EXPORT_IN_CHILD = False


def available() -> bool:
    """Whether ONNX Runtime (and the ONNX exporter's ``onnx`` package) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Stage(nn.Module):
    """The backbone at one output stride, as the exported graph: (B, 1, H, W) in [0, 1] ->
    (F (B, n, H/os, W/os), logits (B, K)).

    At stride 16 the backbone runs its weights through a structure-only dilated twin with
    ``torch.func.functional_call``, which the TorchScript tracer refuses ("the stateless API
    can't be used with Jitted modules"); the graph is traced from a real dilated twin holding a
    copy of the same weights instead (the same computation)."""

    def __init__(self, backbone: Any, output_stride: int) -> None:  # an engine.model.backbones.Backbone
        super().__init__()
        self.backbone, self.output_stride = backbone, output_stride
        self.twin: nn.Module | None = None
        if output_stride != 32:
            twin, _ = backbone.spec.family.build(backbone.name, output_stride=output_stride)
            twin.load_state_dict(backbone.encoder.state_dict(), strict=True)
            self.twin = twin.eval()

    def forward(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        if self.twin is None:
            return self.backbone.forward_torch(x01, self.output_stride)
        f = self.backbone.spec.family.features(self.twin, self.backbone.normalize(x01))
        return f, self.backbone.fc(f.mean(dim=(2, 3)))


class OrtEncoder:
    """Runs ``backbone``'s ``(F, logits)`` through ONNX Runtime; one session per output
    stride, made (exported or read from ``cache``) on first use. Thread-safe: sessions
    are shared by concurrent predictions."""

    def __init__(self, backbone: Any, key: str, cache: Path, threads: int | None = None, checkpoint: Path | None = None) -> None:
        self.backbone, self.key, self.cache, self.checkpoint = backbone, key, Path(cache), checkpoint
        self.threads = threads or torch.get_num_threads()
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def graph_path(self, output_stride: int) -> Path:
        return self.cache / f"{self.key}-os{output_stride}.onnx"

    def _export(self, output_stride: int) -> bytes:
        size = 64 * (output_stride // 16)  # any size works: height and width are dynamic
        x = torch.rand(2, 1, size, size)
        buf = io.BytesIO()
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # torch 2.14 marks the TorchScript exporter deprecated; the torch.export one needs
                # onnxscript and exports this encoder no better. Pinned torch: revisit on upgrade.
                warnings.simplefilter("ignore", DeprecationWarning)
                # The TorchScript exporter writes to file objects too (typed for paths only).
                torch.onnx.export(_Stage(self.backbone, output_stride), (x,), buf, dynamo=False, opset_version=OPSET,  # type: ignore[arg-type]
                                  input_names=["x"], output_names=["features", "logits"],
                                  dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}})
        finally:
            self.backbone.train(was_training)
        return buf.getvalue()

    def _export_in_child(self, output_stride: int) -> bytes:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
            return ex.submit(_export_checkpoint, str(self.checkpoint), output_stride).result()

    def session(self, output_stride: int):
        import onnxruntime as ort

        with self._lock:
            found = self._sessions.get(output_stride)
            if found is not None:
                return found
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            path = self.graph_path(output_stride)
            sess = None
            if path.is_file():
                try:
                    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                except Exception as exc:  # a damaged cache file: export again
                    log.warning("cached graph %s unreadable (%s); exporting again", path, exc)
            if sess is None:
                graph = self._export_in_child(output_stride) if EXPORT_IN_CHILD and self.checkpoint is not None else self._export(output_stride)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(path, graph)
                except OSError as exc:  # a read-only data folder: run from memory
                    log.warning("cannot cache %s (%s)", path, exc)
                sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
            self._sessions[output_stride] = sess
            return sess

    def __call__(self, x01: Tensor, output_stride: int = 32) -> tuple[Tensor, Tensor]:
        x = np.ascontiguousarray(x01.detach().to("cpu", torch.float32).numpy())
        features, logits = self.session(output_stride).run(None, {"x": x})
        return torch.from_numpy(features), torch.from_numpy(logits)


def _export_checkpoint(path: str, output_stride: int) -> bytes:
    """In a spawned child: the graph of ``path``'s encoder at ``output_stride``."""
    from .checkpoint import load_checkpoint

    torch.set_num_threads(1)
    ck = load_checkpoint(path, "cpu")
    return OrtEncoder(ck.model.backbone, ck.sha256, Path("."))._export(output_stride)


def attach(model: Any, key: str, cache: Path, threads: int | None = None, checkpoint: Path | None = None) -> OrtEncoder:
    """Run ``model``'s backbone (an :class:`~engine.model.msfm.MSFM`'s) through ONNX Runtime
    at inference; ``checkpoint`` is the file it came from (for :data:`EXPORT_IN_CHILD`)."""
    runner = OrtEncoder(model.backbone, key, cache, threads, checkpoint)
    model.backbone.runtime = runner
    return runner


__all__ = ["OPSET", "OrtEncoder", "attach", "available"]
