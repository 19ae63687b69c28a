"""The desktop entry point starts a real (offscreen) Qt window."""

import pytest

pytest.importorskip("pytestqt")


def test_window_opens_and_names_the_study(qtbot):
    from msfm_desktop.app import build_window

    win = build_window("/data/study-1")
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.windowTitle().startswith("MSFM Desktop")
    assert "/data/study-1" in win.centralWidget().text()
