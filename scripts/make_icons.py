"""Render the application icon set in ``resources/icons/`` from its one source,
``msfm-desktop.svg``: PNGs for Linux (hicolor sizes) and Qt, a multi-size ``.ico`` for
Windows and an ``.icns`` for macOS.

Run after editing the SVG: ``QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_icons.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtGui import QImage

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SVG = ICONS / "msfm-desktop.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def png_path(size: int) -> Path:
    return ICONS / f"msfm-desktop-{size}.png"


def render(size: int) -> QImage:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG")
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return img


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    if QGuiApplication.instance() is None:
        QGuiApplication(sys.argv[:1])  # QPainter needs an application object
    for size in PNG_SIZES:
        if not render(size).save(str(png_path(size))):
            raise SystemExit(f"cannot write {png_path(size)}")
    big = Image.open(png_path(1024))
    # Pillow scales the 1024 px master for each .ico/.icns entry (Lanczos), the way the
    # platform tools would.
    big.save(ICONS / "msfm-desktop.ico", sizes=[(s, s) for s in ICO_SIZES])
    big.save(ICONS / "msfm-desktop.icns")
    for p in sorted(ICONS.iterdir()):
        print(f"{p.name:28s} {p.stat().st_size:8d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
