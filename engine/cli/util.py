"""Small helpers the ``msfm`` subcommands share: the one-line error and an atomic text write."""

from __future__ import annotations

import sys
from pathlib import Path

from ..atomic import write_text_atomic


def _fail(msg: str, code: int = 2) -> int:
    print(f"msfm: error: {msg}", file=sys.stderr)
    return code


def _write_atomic_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)
