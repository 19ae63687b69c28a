"""What a checkpoint file is, without torch: its SHA-256 and its description.

The app names its model in the window before torch is imported (seconds on a
reading-room PC): the checkpoint's header is read from its archive without the weights.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import pickle
import threading
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..config import ModelConfig
from .calibration import Calibration

#: What a checkpoint's payload says it is (engine.model.checkpoint writes it).
FORMAT = "msfm-checkpoint"
FORMAT_VERSION = 1

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


class _HeaderUnpickler(pickle.Unpickler):
    """Unpickles a checkpoint's ``data.pkl`` without torch and without its tensors: the
    globals a weights-only checkpoint of plain tensors uses are stood in for by nothing (each
    tensor reads as None); any other global is refused, as ``torch.load(weights_only=True)``
    refuses what it does not know."""

    _ALLOWED = {("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in self._ALLOWED or (module == "torch" and name.endswith("Storage")):
            return _nothing
        raise pickle.UnpicklingError(f"global {module}.{name} is not read without torch")

    def persistent_load(self, pid: Any) -> None:
        return None  # a tensor's storage: not read


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def read_header(path: str | Path) -> tuple[ModelConfig, dict[str, Any], str | None]:
    """A checkpoint's configuration, metadata and creation time, read without torch and
    without its weights (milliseconds, not the seconds of importing torch). Raises
    ``ValueError`` (or ``OSError``, ``zipfile.BadZipFile``, ``pickle.UnpicklingError``) for
    anything that is not a checkpoint this engine writes; :func:`describe` then asks torch,
    whose answer names the problem."""
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError("not a torch checkpoint archive")
        payload = _HeaderUnpickler(io.BytesIO(z.read(pkl[0]))).load()
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError("not an MSFM checkpoint of a known format")
    meta = json.loads(payload.get("meta", "{}"))
    meta.setdefault("created", payload.get("created"))
    meta.setdefault("engine_version", payload.get("engine_version"))
    return ModelConfig.from_dict(json.loads(payload["config"])), meta, payload.get("created")


def describe(path: str | Path) -> CheckpointInfo:
    """:func:`engine.model.checkpoint.describe_checkpoint` without importing torch where the
    file allows (:func:`read_header`): the app names its model before torch is loaded. A file
    that does not read that way is described by torch, whose
    :class:`~engine.errors.CheckpointError` says why it is unusable."""
    p = Path(path)
    try:
        config, meta, created = read_header(p)
    except Exception:  # noqa: BLE001  (any failure: torch's reader gives the precise reason)
        from .checkpoint import describe_checkpoint

        return describe_checkpoint(p)
    return checkpoint_info(config, meta, file_sha256(p), created)


__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointInfo", "checkpoint_info", "describe", "file_sha256", "read_header"]
