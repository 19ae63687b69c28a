"""The user's models and fine-tuning runs, in the user data folder (platformdirs).

Layout under :func:`data_dir` (``MSFM_DATA_DIR`` overrides it)::

    models/<id>/model.pt     an accepted fine-tuned model (never overwritten)
    models/<id>/info.json    name, date, base model, data summary, val metrics, sha256,
                             the side-by-side comparison it was accepted on
    runs/<id>/               one fine-tuning run: last.pt, best.pt, history.json, job.json

The bundled default model is listed first and can be neither deleted nor replaced. Files
are written to a temporary name and renamed, so a crash leaves either the old state or
the new one; an installed model's SHA-256 is recorded and checked on use.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_json_atomic
from ..errors import CheckpointError, MSFMError
from ..model.described import describe, file_sha256
from ..resources import APP_AUTHOR, APP_NAME, DATA_ENV, DEFAULT_MODEL, data_dir  # noqa: F401  (the data folder: engine.resources)


class StoreError(MSFMError):
    """A model cannot be installed, found or deleted as asked."""


def now_id(prefix: str) -> str:
    return f"{prefix}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


@dataclass
class InstalledModel:
    """One model the app can use. ``metrics``: validation metrics (auc, kappa, ...)."""

    id: str
    path: Path
    name: str
    sha256: str
    created: str = ""
    builtin: bool = False
    base_sha256: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None

    def summary(self) -> str:
        """One line on the data it learned from."""
        d = self.data
        if not d:
            return ""
        tc = d.get("train_counts", {})
        return f"{d.get('source', '?')} ({d.get('layout', '?')}): {d.get('n_train', '?')} train ({tc.get('1', '?')} abnormal), {d.get('n_val', '?')} val"


class ModelStore:
    """The installed models under ``root/models`` plus the bundled default."""

    def __init__(self, root: str | Path | None = None, default: Path = DEFAULT_MODEL) -> None:
        self.root = Path(root) if root is not None else data_dir()
        self.models_dir = self.root / "models"
        self.runs_dir = self.root / "runs"
        self.default = default

    # ----- listing
    def builtin(self) -> InstalledModel | None:
        try:
            d = describe(self.default)
        except CheckpointError:
            return None
        return InstalledModel("default", self.default, f"{d.name} (bundled)", d.sha256, str(d.created or ""), True,
                              data={}, metrics=dict(d.metrics or {}))

    def list(self) -> list[InstalledModel]:
        """The bundled model first, then the fine-tuned ones, newest first."""
        return [m for m in [self.builtin()] if m is not None] + self.installed()

    def installed(self) -> builtins.list[InstalledModel]:
        """The fine-tuned models, newest first; a damaged folder is left out (it cannot be
        used). Reads only their info.json: no checkpoint is loaded or hashed."""
        found = []
        if self.models_dir.is_dir():
            for d in self.models_dir.iterdir():
                m = self._read(d)
                if m is not None:
                    found.append(m)
        return sorted(found, key=lambda m: m.created, reverse=True)

    def _read(self, folder: Path) -> InstalledModel | None:
        try:
            info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        path = folder / "model.pt"
        if not path.is_file():
            return None
        return InstalledModel(folder.name, path, str(info.get("name", folder.name)), str(info.get("sha256", "")), str(info.get("created", "")),
                              False, info.get("base_sha256"), dict(info.get("data") or {}), dict(info.get("metrics") or {}), info.get("comparison"))

    def get(self, model_id: str) -> InstalledModel:
        for m in self.list():
            if m.id == model_id:
                return m
        raise StoreError(f"no installed model {model_id!r}")

    def find_installed(self, path: str | Path) -> InstalledModel | None:
        """The fine-tuned model stored at ``path``, or None (the bundled one included)."""
        p = Path(path).resolve()
        return next((m for m in self.installed() if m.path.resolve() == p), None)

    # ----- changing
    def install(self, checkpoint: str | Path, name: str, base_sha256: str | None = None, data: dict | None = None,
                metrics: dict | None = None, comparison: dict | None = None) -> InstalledModel:
        """Copy ``checkpoint`` into a new folder of its own (never over an existing one),
        check the copy's SHA-256 against the source, and record what it is."""
        src = Path(checkpoint)
        sha = file_sha256(src)
        from ..model.checkpoint import describe_checkpoint

        describe_checkpoint(src)  # refuses anything that is not a usable MSFM checkpoint (read with torch: a new file)
        folder = self.models_dir / now_id("ft")
        folder.mkdir(parents=True, exist_ok=False)
        try:
            tmp = folder / ".model.pt.partial"
            shutil.copyfile(src, tmp)
            if file_sha256(tmp) != sha:
                raise StoreError(f"copy of {src} does not match its SHA-256; nothing installed")
            os.replace(tmp, folder / "model.pt")
            info = {"name": name, "sha256": sha, "created": _dt.datetime.now().isoformat(timespec="seconds"), "base_sha256": base_sha256,
                    "data": data or {}, "metrics": metrics or {}, "comparison": comparison, "source": str(src)}
            write_json_atomic(folder / "info.json", info)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        m = self._read(folder)
        assert m is not None
        return m

    def delete(self, model_id: str) -> None:
        m = self.get(model_id)
        if m.builtin:
            raise StoreError("the bundled default model cannot be deleted")
        shutil.rmtree(m.path.parent)

    def verify(self, m: InstalledModel) -> bool:
        """True when the file still has the SHA-256 recorded at install."""
        return m.path.is_file() and file_sha256(m.path) == m.sha256


__all__ = ["ModelStore", "InstalledModel", "StoreError", "data_dir", "write_json_atomic", "now_id", "DATA_ENV"]
