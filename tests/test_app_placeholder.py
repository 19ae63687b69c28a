"""The desktop entry point starts a real (offscreen) Qt window naming its study and model."""

import pytest

pytest.importorskip("pytestqt")


def test_window_names_the_study_and_the_model(qtbot, resnet18_model, tmp_path):
    from engine.checkpoint import file_sha256, save_checkpoint
    from msfm_desktop.app import build_window

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    win = build_window("/data/study-1", model=ck)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.windowTitle().startswith("MSFM Desktop")
    text = win.centralWidget().text()
    assert "/data/study-1" in text
    assert "MSFM-test" in text and file_sha256(ck)[:12] in text


def test_window_says_when_there_is_no_model(qtbot, tmp_path):
    from msfm_desktop.app import build_window

    win = build_window(None, model=tmp_path / "missing.pt")
    qtbot.addWidget(win)
    assert "no model: checkpoint not found" in win.centralWidget().text()
