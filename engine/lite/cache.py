"""What the torch-free predictor keeps of a model, beside its ONNX graphs.

The encoder graphs (:mod:`engine.model.ort`) hold the weights of every stage's encoder and
of the shared FC; the rest of MSFM's inference needs the configuration, the FC's class
weights (for the class maps and the activation maps) and, for the app, the checkpoint's
description. They are written once, by the PyTorch side, when it first builds an ONNX
Runtime predictor of a checkpoint (:func:`write_manifest`), as
``<cache>/onnx/<sha256>-lite.json``, keyed like the graphs by the checkpoint file's
SHA-256. No torch here: this is what a starting app reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_json_atomic
from ..config import ModelConfig
from ..errors import ConfigError
from ..model.described import CheckpointInfo, checkpoint_info

log = logging.getLogger(__name__)

FORMAT = "msfm-lite"
FORMAT_VERSION = 1


def graph_name(sha256: str, output_stride: int) -> str:
    """File name of a model's encoder graph at ``output_stride`` (:mod:`engine.model.ort`)."""
    return f"{sha256}-os{output_stride}.onnx"


def manifest_path(cache: Path, sha256: str) -> Path:
    return Path(cache) / f"{sha256}-lite.json"


def strides_needed(config: ModelConfig) -> tuple[int, ...]:
    """The encoder graphs a model's inference runs: the main stage's (32) and the object
    and part stages' (``config.output_stride``, ``config.parts_stride``)."""
    return tuple(sorted({32, int(config.output_stride), config.parts_stride}))


def unsupported(config: ModelConfig) -> str | None:
    """Why the torch-free path cannot run this model, or None. FMA applied at inference
    (``train_only`` off) needs its own attention network, which is not exported."""
    if config.fma.active and not config.fma.train_only:
        return "FMA is applied at inference"
    return None


@dataclass(frozen=True)
class LiteModel:
    """A model as the torch-free predictor runs it.

    Attributes:
        config: the checkpoint's configuration.
        fc_weight: (K, n) float32, the shared FC's class weights.
        info: the checkpoint's description (name, SHA-256 of the file, calibration).
        graphs: output stride -> the encoder graph's file.
        fc_bias: (K,) float32, the FC's bias: ``cell_pool="lse"`` pools the class map itself
            and adds the bias difference (the graphs' logits are GAP + FC).
    """

    config: ModelConfig
    fc_weight: np.ndarray
    info: CheckpointInfo
    graphs: dict[int, Path]
    fc_bias: np.ndarray | None = None


def write_manifest(cache: Path, sha256: str, config: ModelConfig, meta: dict[str, Any], created: str | None, fc_weight: np.ndarray,
                   fc_bias: np.ndarray | None = None) -> Path | None:
    """Write the manifest of a model whose graphs are in ``cache``; None (logged) when the
    model cannot run torch-free or the folder cannot be written (the PyTorch path still works)."""
    why = unsupported(config)
    if why is not None:
        log.info("no torch-free predictor for %s: %s", sha256[:12], why)
        return None
    path = manifest_path(cache, sha256)
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "sha256": sha256,
        "config": config.to_dict(), "meta": meta, "created": created,
        "fc_weight": np.asarray(fc_weight, np.float32).tolist(),
        "fc_bias": None if fc_bias is None else np.asarray(fc_bias, np.float32).tolist(),
        "graphs": {str(s): graph_name(sha256, s) for s in strides_needed(config)},
    }
    try:
        write_json_atomic(path, doc)
    except OSError as exc:  # a read-only cache: the app starts the slower way
        log.warning("cannot write %s (%s)", path, exc)
        return None
    return path


def read_manifest(cache: Path, sha256: str) -> LiteModel | None:
    """The cached :class:`LiteModel` of the checkpoint whose file hashes to ``sha256``, or
    None when there is none, it is damaged or stale, or a graph is missing (the caller
    then builds the PyTorch predictor, which writes it afresh)."""
    path = manifest_path(cache, sha256)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT or int(doc.get("format_version", 0)) != FORMAT_VERSION or doc.get("sha256") != sha256:
            raise ValueError("not a manifest of this model")
        config = ModelConfig.from_dict(doc["config"])
        meta = dict(doc.get("meta") or {})
        fc = np.asarray(doc["fc_weight"], np.float32)
        if fc.shape != (config.num_classes, fc.shape[1]):
            raise ValueError(f"FC weights of shape {fc.shape}")
        bias = None if doc.get("fc_bias") is None else np.asarray(doc["fc_bias"], np.float32)
        if bias is not None and bias.shape != (config.num_classes,):
            raise ValueError(f"FC bias of shape {bias.shape}")
        if bias is None and config.cell_pool != "mean":
            raise ValueError("no FC bias, which cell pooling needs (a manifest of an older version)")
        graphs = {int(s): Path(cache) / str(name) for s, name in doc["graphs"].items()}
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        log.warning("ignoring %s (%s)", path, exc)
        return None
    if unsupported(config) is not None or any(s not in graphs or not graphs[s].is_file() for s in strides_needed(config)):
        return None
    return LiteModel(config, fc, checkpoint_info(config, meta, sha256, doc.get("created")), graphs, bias)


__all__ = ["LiteModel", "graph_name", "manifest_path", "read_manifest", "strides_needed", "unsupported", "write_manifest"]
