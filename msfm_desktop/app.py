"""``msfm-desktop``: the application entry point.

Until the desktop issue lands this opens a minimal window that names the engine, the
study it was given (the bundled demo study by default) and the model it will use (the
bundled default model); the study browser, viewer and overlays come with that issue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import __version__
from engine.checkpoint import describe_checkpoint
from engine.errors import CheckpointError
from engine.resources import DEFAULT_MODEL, DEMO_STUDY


def model_summary(path: Path = DEFAULT_MODEL) -> str:
    """One line naming the model the app will use, or why there is none."""
    try:
        d = describe_checkpoint(path)
    except CheckpointError as exc:
        return f"no model: {exc}"
    return f"{d['name']} ({d['backbone']}, {d['input_size']} px, sha256 {d['sha256'][:12]}) from {path.name}"


def build_window(path: str | None = None, model: Path = DEFAULT_MODEL):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel, QMainWindow

    win = QMainWindow()
    win.setWindowTitle(f"MSFM Desktop {__version__}")
    text = (
        f"<h2>MSFM Desktop {__version__}</h2>"
        "<p>Weakly supervised abnormality classification and localisation in radiographs.</p>"
        f"<p>Study: {path or 'none opened'}</p>"
        f"<p>Model: {model_summary(model)}</p>"
        "<p>The engine and the <tt>msfm</tt> command line are ready; the study browser and viewer follow.</p>"
    )
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setObjectName("placeholder")
    win.setCentralWidget(label)
    win.resize(720, 420)
    return win


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msfm-desktop", description="MSFM Desktop")
    parser.add_argument("path", nargs="?", help="study folder or image file to open")
    parser.add_argument("--version", action="version", version=f"msfm-desktop {__version__}")
    args = parser.parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    path = args.path or (str(DEMO_STUDY) if DEMO_STUDY.is_dir() else None)
    win = build_window(path)
    win.show()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
