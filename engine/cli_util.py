"""Small helpers the ``msfm`` subcommands share: the one-line error and an atomic text write."""

from __future__ import annotations

import sys
from pathlib import Path


def _fail(msg: str, code: int = 2) -> int:
    print(f"msfm: error: {msg}", file=sys.stderr)
    return code


def _write_atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
