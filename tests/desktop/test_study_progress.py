"""The study's progress is drawn at most every STUDY_REDRAW_MS: a burst of steps (a folder
of files outside the intended use answers dozens back to back) costs the event loop one
redraw, the latest count is drawn when the interval is up, the end of the run draws the
final state, and a count of a study the user has since replaced is never drawn."""

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.desktop.test_app_panels import pngs, window  # noqa: E402
from tests.desktop.test_app_safety import folder  # noqa: E402
from tests.desktop.test_app_window import open_and_wait  # noqa: E402


@pytest.fixture
def study_window(qtbot, tmp_path, resnet18_model):
    """The real window with a small model and a study of two radiographs open."""
    from engine.model.checkpoint import save_checkpoint

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    win = window(qtbot, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), ck)
    open_and_wait(qtbot, win, folder(tmp_path, "a", pngs(2)))
    return win


def _counting_draws(win, monkeypatch) -> list[bool]:
    draws: list[bool] = []
    real = win.summary.show_verdicts

    def counted(session, cal, running: bool = False):
        draws.append(running)
        return real(session, cal, running)

    monkeypatch.setattr(win.summary, "show_verdicts", counted)
    return draws


def test_a_burst_of_steps_is_drawn_once_then_the_latest_count(qtbot, tmp_path, monkeypatch, study_window):
    from msfm_desktop.analysis import STUDY_REDRAW_MS
    from msfm_desktop.session import StudyRun

    win = study_window
    draws = _counting_draws(win, monkeypatch)
    win.session.run = StudyRun(total=40)
    win._set_busy(True)
    for done in range(1, 41):  # forty steps before the event loop runs again
        win._on_study_progress(done, 40)
    assert len(draws) == 1 and win.progress.value() == 1
    assert win.statusBar().currentMessage() == "Analysing: 1 of 40 images"
    assert win.session.run.done == 40  # counted at once, drawn later
    qtbot.waitUntil(lambda: win.progress.value() == 40, timeout=10 * STUDY_REDRAW_MS)
    assert len(draws) == 2 and win.statusBar().currentMessage() == "Analysing: 40 of 40 images"

    win._on_study_progress(40, 40)  # within the interval: waits for it ...
    win._on_study_done(win.session.token, False)  # ... and the end of the run replaces it
    n = len(draws)
    qtbot.wait(3 * STUDY_REDRAW_MS)
    assert len(draws) == n and draws[-1] is False  # the final verdicts, no running draw after them
    assert win.statusBar().currentMessage().startswith("Study analysis done")


def test_a_count_of_a_replaced_study_is_not_drawn(qtbot, tmp_path, monkeypatch, study_window):
    from msfm_desktop.analysis import STUDY_REDRAW_MS
    from msfm_desktop.session import StudyRun

    win = study_window
    win.session.run = StudyRun(total=30)
    win._on_study_progress(1, 30)
    win._on_study_progress(17, 30)  # waits for the interval
    open_and_wait(qtbot, win, folder(tmp_path, "b", pngs(1)))  # another study replaces everything
    win.session.run = StudyRun(total=1)  # even one that runs under a new token
    draws = _counting_draws(win, monkeypatch)
    qtbot.wait(3 * STUDY_REDRAW_MS)
    # the count itself, not a bare "17" that the temporary folder's name may hold (pytest-17)
    assert draws == [] and "17 of 30" not in win.statusBar().currentMessage()
