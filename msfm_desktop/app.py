"""``msfm-desktop``: the application entry point.

Until the desktop issue lands this opens a minimal window that names the engine and the
path it was given; the study browser, viewer and overlays come with that issue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import __version__

#: Opened when the app starts without a path (SPEC §2 resources/).
DEMO_STUDY = Path(__file__).resolve().parent.parent / "resources" / "demo"


def build_window(path: str | None = None):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel, QMainWindow

    win = QMainWindow()
    win.setWindowTitle(f"MSFM Desktop {__version__}")
    text = (
        f"<h2>MSFM Desktop {__version__}</h2>"
        "<p>Weakly supervised abnormality classification and localisation in radiographs.</p>"
        f"<p>Study: {path or 'none opened'}</p>"
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
