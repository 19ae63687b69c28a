"""Checkpoints (SPEC §6): one ``torch.save`` file of a state dict + JSON-safe metadata.

Written atomically (temp file in the same folder, fsync, ``os.replace``), loaded only
with ``torch.load(weights_only=True)``: a file that needs pickle to load is refused.
The SHA-256 of the file identifies the model in the app and in every export.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..atomic import write_atomic
from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from .calibration import Calibration
from .described import _HASHES, _HASHES_LOCK, FORMAT, FORMAT_VERSION, CheckpointInfo, _file_key, checkpoint_info, file_sha256  # noqa: F401  (re-exported)


def state_sha256(model: torch.nn.Module) -> str:
    """Hash of a model's parameters and buffers (for models that were never saved)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class LoadedCheckpoint:
    """A model restored from a checkpoint, with its metadata and file hash."""

    model: Any  # engine.model.msfm.MSFM (imported lazily to keep this module light)
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None
    #: Optimiser/scheduler/progress state of a training run (``last.pt``), else None.
    train_state: dict[str, Any] | None = None

    @property
    def calibration(self) -> Calibration:
        """The validation calibration in ``meta["calibration"]``, or the uncalibrated
        stand-in of :meth:`Calibration.for_checkpoint` for an older checkpoint."""
        return Calibration.for_checkpoint(self.meta, self.config.threshold)


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file beside ``path``, fsync, then ``os.replace``.

    A crash or a full disk leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    try:
        write_atomic(path, lambda fh: torch.save(obj, fh))
    except RuntimeError as exc:
        # torch's zip writer reports a full disk as RuntimeError("unexpected pos ...");
        # callers handle disk problems as OSError, with the system's own reason.
        cause = next((e for e in _chain(exc) if isinstance(e, OSError)), None)
        reason = cause.strerror if cause is not None and cause.strerror else str(exc)
        raise OSError(getattr(cause, "errno", None), f"cannot write {path}: {reason}") from exc


def _stored(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    t = t.detach().to("cpu")
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    meta: dict[str, Any] | None = None,
    config: ModelConfig | None = None,
    train_state: dict[str, Any] | None = None,
    weights_dtype: torch.dtype | None = None,
) -> str:
    """Save ``model`` (an :class:`~engine.model.msfm.MSFM`) with metadata; returns the file's SHA-256.

    ``config`` overrides ``model.config`` (e.g. with a threshold tuned on validation);
    ``train_state`` (optimiser and scheduler state dicts, epoch, step...) makes the file
    resumable. Both must hold only tensors and plain Python values. ``weights_dtype``
    (e.g. ``torch.float16``) stores floating-point weights in that type to halve the file;
    :func:`load_checkpoint` restores them into the float32 model.
    """
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint metadata must be JSON-safe: {exc}") from exc
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "engine_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": json.dumps((config or model.config).to_dict()),  # type: ignore[operator,union-attr]  # an MSFM's config
        "meta": json.dumps(meta),
        "state_dict": {k: _stored(v, weights_dtype) for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, path)
    return file_sha256(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload, loaded with ``weights_only=True``; :class:`CheckpointError` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        key = _file_key(p)
        data = p.read_bytes()  # read once: hashed here and unpickled from memory
        with _HASHES_LOCK:
            _HASHES.setdefault(key, hashlib.sha256(data).hexdigest())
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler names the global it refused; garbage fails on an opcode.
        if "global" in str(exc).lower():
            raise CheckpointError(f"{p}: refused, the file needs pickle to load (only weights-only checkpoints are accepted)") from exc
        raise CheckpointError(f"{p}: not a readable checkpoint ({' '.join(str(exc).split())[:120]})") from exc
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise CheckpointError(f"{p}: not a readable checkpoint ({' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not an MSFM checkpoint")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format {payload.get('format_version')} is newer than this engine supports")
    return payload


def _header(p: Path, payload: dict[str, Any]) -> tuple[ModelConfig, dict[str, Any]]:
    """The configuration and metadata of a payload from :func:`read_checkpoint`."""
    try:
        config = ModelConfig.from_dict(json.loads(payload["config"]))
        meta = json.loads(payload.get("meta", "{}"))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{p}: invalid configuration in checkpoint: {exc}") from exc
    return config, meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Restore an MSFM model in eval mode on ``device``."""
    from .msfm import MSFM

    p = Path(path)
    payload = read_checkpoint(p)
    config, meta = _header(p, payload)
    model = MSFM(config, pretrained="none")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: weights do not match the {config.backbone} MSFM model: {' '.join(str(exc).split())[:300]}") from exc
    model.to(device).eval()
    meta.setdefault("created", payload.get("created"))
    meta.setdefault("engine_version", payload.get("engine_version"))
    return LoadedCheckpoint(model=model, config=config, meta=meta, sha256=file_sha256(p), path=p, train_state=payload.get("train_state"))


def rewrite_checkpoint(original: str | Path, out: str | Path, model: torch.nn.Module, meta: dict[str, Any], config: ModelConfig,
                       verify: Callable[[Path], None]) -> str:
    """Write a changed copy of ``original`` (new ``meta`` and ``config``, the same weights in
    the dtype they are stored in) to ``out``, which may be ``original`` itself: written to a
    temporary file beside ``out``, checked by ``verify(temp)`` (it raises to refuse), given
    ``original``'s file mode (a shipped model must stay readable), then moved into place.
    A refused or failed copy leaves ``out`` as it was. Returns the new file's SHA-256."""
    import stat

    original, out = Path(original), Path(out)
    stored = read_checkpoint(original)["state_dict"]
    dtype = next((t.dtype for t in stored.values() if t.is_floating_point()), torch.float32)  # float16 files stay float16
    del stored
    meta = {k: v for k, v in meta.items() if k not in ("created", "engine_version")}  # file stamps are written afresh
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.rewriting")
    mode = stat.S_IMODE(original.stat().st_mode)
    try:
        save_checkpoint(tmp, model, meta, config=config, weights_dtype=dtype)
        verify(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return file_sha256(out)


def describe_checkpoint(path: str | Path) -> CheckpointInfo:
    """What a checkpoint holds, without building the model (:class:`CheckpointInfo`).
    :class:`CheckpointError` when the file is missing or not a valid checkpoint."""
    p = Path(path)
    payload = read_checkpoint(p)
    config, meta = _header(p, payload)
    return checkpoint_info(config, meta, file_sha256(p), payload.get("created"))
