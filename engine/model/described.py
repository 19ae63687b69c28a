"""What a checkpoint file is, without torch: its SHA-256 and its description.

The app names its model in the window before torch is imported (seconds on a
reading-room PC), from this module and the description the torch-free predictor's cache
keeps beside the model's graphs (:mod:`engine.lite.cache`).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..config import ModelConfig
from .calibration import Calibration

#: SHA-256 of files hashed in this process, by (path, size, mtime): describing a model,
#: loading it and comparing it (the app, the fine-tune child) read and hash it once.
_HASHES: dict[tuple[str, int, int], str] = {}
_HASHES_LOCK = threading.Lock()


def _file_key(p: Path) -> tuple[str, int, int]:
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes; a file hashed before in this process and unchanged since
    (same size and modification time) is not read again."""
    p = Path(path)
    key = _file_key(p)
    with _HASHES_LOCK:
        known = _HASHES.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    with _HASHES_LOCK:
        _HASHES[key] = h.hexdigest()
    return h.hexdigest()



@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds (:func:`describe_checkpoint`), without the model.

    ``kind`` is ``"msfm"`` or ``"plain"`` (a baseline classifier); ``threshold`` the
    decision threshold on p(abnormal); ``sha256`` of the whole file; ``metrics`` the
    validation metrics saved with it (None for an older checkpoint); ``calibration`` the
    stored :class:`~engine.model.calibration.Calibration`, or an uncalibrated stand-in at
    the threshold for an older checkpoint."""

    name: str
    kind: Literal["msfm", "plain"]
    backbone: str
    input_size: int
    threshold: float
    weights_dtype: str
    sha256: str
    created: str | None
    metrics: dict[str, Any] | None
    calibration: Calibration

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the calibration as its dict)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["calibration"] = self.calibration.to_dict()
        return out


def checkpoint_info(config: ModelConfig, meta: dict[str, Any], sha256: str, created: str | None) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a checkpoint's configuration and metadata."""
    return CheckpointInfo(
        name=str(meta.get("name", f"MSFM-{config.backbone}")),
        kind="plain" if meta.get("kind", "msfm") == "plain" else "msfm",
        backbone=config.backbone,
        input_size=int(config.input_size),
        threshold=float(config.threshold),
        weights_dtype=str(meta.get("weights_dtype", "float32")),
        sha256=sha256,
        created=created,
        metrics=meta.get("metrics"),
        calibration=Calibration.for_checkpoint(meta, config.threshold),
    )


def describe(path: str | Path) -> CheckpointInfo:
    """:func:`engine.model.checkpoint.describe_checkpoint`, from the torch-free predictor's
    cache when it knows this file (by its SHA-256: a file that loaded before), so that
    naming the model needs no torch; otherwise read from the file with torch.
    :class:`~engine.errors.CheckpointError` when the file is missing or not a valid checkpoint."""
    p = Path(path)
    if p.is_file():
        from ..lite.cache import read_manifest
        from ..resources import cache_dir

        cached = read_manifest(cache_dir() / "onnx", file_sha256(p), need_graphs=False)
        if cached is not None:
            return cached.info
    from .checkpoint import describe_checkpoint

    return describe_checkpoint(p)


__all__ = ["CheckpointInfo", "checkpoint_info", "describe", "file_sha256"]
