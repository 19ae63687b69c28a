"""Writing export files safely: all or nothing per image, never over an existing file.

Each object is written to a hidden temporary file in the destination folder, flushed
and fsynced; only when every object of the group is written are they given their final
names, with ``os.link`` (which fails rather than replace an existing file; a taken name
gets ``-1``, ``-2``... before its extension). A failure part-way removes the temporaries and any file
of the group already named, so a reader never sees a half-written export.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..atomic import write_bytes_atomic, write_temp


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (symlinks resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


class WriteGroup:
    """Collect ``(name, writer)`` pairs; :meth:`commit` writes them all or none.

    ``writer(fh)`` writes the content to a binary file object.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.items: list[tuple[str, Callable, Path]] = []

    def add(self, name: str, writer: Callable, folder: str | Path | None = None) -> None:
        """``folder``: where this item goes (default: the group's folder); one group may
        span folders and is still written all or nothing."""
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"export file name must be a plain name, got {name!r}")
        self.items.append((name, writer, Path(folder) if folder is not None else self.folder))

    def commit(self) -> list[Path]:
        temps: list[tuple[str, str, Path]] = []
        final: list[Path] = []
        try:
            for name, writer, folder in self.items:
                temps.append((name, str(write_temp(folder, name, writer)), folder))
            for name, tmp, folder in temps:
                final.append(_link_unique(tmp, folder, name))
        except BaseException:
            for p in final:
                p.unlink(missing_ok=True)
            raise
        finally:
            for _, tmp, _ in temps:
                Path(tmp).unlink(missing_ok=True)
        return final


def _link_unique(tmp: str, folder: Path, name: str) -> Path:
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 0
    while True:
        candidate = folder / (name if n == 0 else f"{stem}-{n}{suffix}")
        try:
            os.link(tmp, candidate)  # atomic, and never replaces an existing file
            return candidate
        except FileExistsError:
            n += 1


__all__ = ["WriteGroup", "is_inside", "write_new_file"]


def write_new_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` complete or not at all; :class:`FileExistsError` when
    ``path`` exists (a name the user chose is never silently changed or replaced)."""
    return write_bytes_atomic(path, data, replace=False)
