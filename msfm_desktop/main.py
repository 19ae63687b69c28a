"""``msfm-desktop``: the command line of the desktop app (a study to open, ``--version``,
``--self-check``), the application object and its icon.

Qt, torch and the window are imported only after the arguments are parsed, so
``--version`` and ``--help`` answer at once (a bundle's deployment scripts call them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from engine import __version__
from engine.resources import DEMO_STUDY, ICONS

if TYPE_CHECKING:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QLabel


def app_icon() -> QIcon:
    """The application icon from the PNG set in ``resources/icons`` (PNG, not the SVG: no
    dependence on Qt's SVG icon-engine plugin being bundled)."""
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for png in sorted(ICONS.glob("msfm-desktop-*.png")):
        icon.addFile(str(png))
    return icon


def start_up_picture() -> QLabel:
    """The picture shown while the app starts: the icon on the icon's dark background,
    with the version and what is happening in white below it. A frameless label, not a
    ``QSplashScreen``: Qt 6's ``show()`` and ``finish()`` of that wait up to a second each
    for the window system to expose the window (measured: 1.0 s per call, offscreen and
    under X), a second of every start spent waiting. ``message()`` is the text drawn."""
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtGui import QColor, QPainter, QPixmap
    from PySide6.QtWidgets import QLabel

    message = f"MSFM Desktop {__version__}\nloading the model…"
    picture = QPixmap(300, 330)
    picture.fill(QColor("#111827"))
    painter = QPainter(picture)
    painter.drawPixmap(22, 10, app_icon().pixmap(256, 256))
    painter.setPen(QColor("white"))
    painter.drawText(QRect(0, 266, 300, 60), int(Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter), message)
    painter.end()
    splash = QLabel()
    splash.setWindowFlags(Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint)
    splash.setPixmap(picture)
    splash.setFixedSize(picture.size())
    splash.message = lambda: message  # type: ignore[method-assign]  # what it says, for tests and screen readers
    splash.setAccessibleName(message)
    screen = splash.screen()
    if screen is not None:  # centred, as a splash screen is
        splash.move(screen.availableGeometry().center() - splash.rect().center())
    return splash


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msfm-desktop", description="MSFM Desktop")
    parser.add_argument("path", nargs="?", help="study folder, image file or DICOMDIR to open (default: the bundled demo study)")
    parser.add_argument("--version", action="version", version=f"msfm-desktop {__version__}")
    parser.add_argument("--self-check", metavar="SCREENSHOT.png", type=Path,
                        help="check this installation: open the study, analyse its first image, save a picture of the "
                             "window, print a JSON summary and exit (0 when everything worked)")
    parser.add_argument("--self-check-timeout", type=float, default=600.0, metavar="S", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path = args.path or (str(DEMO_STUDY) if DEMO_STUDY.is_dir() else None)
    if args.self_check is not None and path is None:
        parser.error("--self-check needs a study: no path given and no demo study bundled")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MSFM Desktop")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("msfm-desktop")  # ties the window to installer/linux/msfm-desktop.desktop
    app.setWindowIcon(app_icon())
    # torch, torchvision and the model code take seconds to import on a reading-room PC
    # (benchmarks/RESULTS.md, start): say at once that the program is starting.
    splash = start_up_picture()
    splash.show()
    app.processEvents()
    splash_unix = time.time()

    from .app import build_window

    # The window shows first; the engine warms up and the model loads in the background,
    # while the study is indexed and its first image decoded.
    win = build_window(path, warm_up=False)
    win.preload_model()
    check = None
    if args.self_check is not None:
        from .selfcheck import SelfCheck

        check = SelfCheck(win, args.self_check, args.self_check_timeout, splash_unix=splash_unix)
    win.show()
    splash.close()
    code = int(app.exec())
    if check is not None:
        win.close()  # stops the worker threads and the decoder process before exit
    return code


if __name__ == "__main__":
    sys.exit(main())
