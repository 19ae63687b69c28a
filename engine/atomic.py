"""The one way the engine writes a file so that no reader ever sees half of it.

Content goes to a hidden temporary file in the destination folder (same file system), is
flushed and fsynced, and only then gets its name: with ``os.replace`` where a new version
may take the place of the old one (checkpoints, JSON state), or with ``os.link``, which fails
rather than replace, where an existing file must never be touched (exports). A failure at
any point removes the temporary file and leaves what was there before.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Writer = Callable[[IO[bytes]], Any]


def write_temp(folder: Path, name: str, writer: Writer, suffix: str = ".partial") -> Path:
    """``writer(fh)`` into a fsynced hidden temporary file in ``folder``; its path. The
    caller names it (``os.replace``/``os.link``) and removes it when that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: str | Path, writer: Writer, replace: bool = True, mode: int | None = None) -> Path:
    """Write ``path`` complete or not at all. ``replace``: a new version takes the place of
    an existing file; else :class:`FileExistsError` when ``path`` exists. ``mode``: the new
    file's permission bits (default: the temporary file's, 0600 under the usual umask)."""
    path = Path(path)
    tmp = write_temp(path.parent, path.name, writer)
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and never replaces an existing file
    finally:
        tmp.unlink(missing_ok=True)
    sync_folder(path.parent)
    return path


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, replace: bool = True) -> Path:
    return write_atomic(path, lambda fh: fh.write(data), replace)


def write_text_atomic(path: str | Path, text: str, replace: bool = True) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), replace)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """JSON (indent 1, UTF-8) in place of ``path``."""
    return write_text_atomic(path, json.dumps(obj, indent=1))


__all__ = ["Writer", "sync_folder", "write_atomic", "write_bytes_atomic", "write_json_atomic", "write_temp", "write_text_atomic"]
