"""One-click fine-tuning in the app (real widgets offscreen, real FracAtlas images, the
bundled default model as the starting point): curves fill, a second run cancels
mid-epoch and resumes after a "restart", the UI keeps running, and accepting the new
model makes the next prediction carry its hash."""

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, QTimer  # noqa: E402

from tests.conftest import XRAY  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings):
    from msfm_desktop.app import build_window

    win = build_window(None, settings=settings)
    win.prefs.device = "cpu"
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def fill_form(panel, folder, epochs: int) -> None:
    panel.folder.setText(str(folder))
    panel.refresh_preview()
    panel.advanced.setChecked(True)
    panel.epochs.setValue(epochs)
    panel.batch.setValue(4)
    panel.input_size.setValue(128)  # tiny input: a CPU test


def test_fine_tune_cancel_resume_and_accept(qtbot, tmp_path, tiny_csv, settings):
    from engine.checkpoint import file_sha256
    from engine.resources import DEFAULT_MODEL

    win = make_window(qtbot, settings)
    assert win.model == DEFAULT_MODEL
    panel = win.open_finetune()
    assert not panel.start_button.isEnabled()  # no folder yet
    fill_form(panel, tiny_csv.parent, epochs=1)
    assert "20 images — 10 normal, 10 abnormal" in panel.preview_label.text()  # the tiny CSV: 12 train + 8 val
    assert panel.start_button.isEnabled() and panel.base.currentData() == str(DEFAULT_MODEL)
    junk = tmp_path / "not-a-model.pt"
    junk.write_bytes(b"junk")
    assert not panel.add_checkpoint(junk) and "Cannot start from this checkpoint" in panel.state.text()
    assert panel.add_checkpoint(DEFAULT_MODEL) and panel.base.currentData() == str(DEFAULT_MODEL)

    ticks: list[float] = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    panel.start()
    assert panel.running()  # returned at once; training is on its own thread
    qtbot.waitUntil(lambda: not panel.running() and panel.worker is None, timeout=600000)
    timer.stop()
    print(f"fine-tune: {len(ticks)} ticks, longest event-loop gap {np.diff(ticks).max() * 1000:.0f} ms")
    assert len(ticks) > 20  # the event loop kept running while the model trained
    assert panel.status == "finished", panel.state.text()
    xs, ys = panel.curves.loss_points["total"]
    assert len(xs) == 3 and all(np.isfinite(ys))  # 12 training images / batch 4
    assert [len(panel.curves.val_points[k][0]) for k in ("auc", "kappa", "accuracy")] == [1, 1, 1]
    cmp = panel.comparison
    assert cmp["previous"]["sha256"] == file_sha256(DEFAULT_MODEL) and cmp["new"]["n"] == 8
    assert panel.table.item(0, 0).text() == "8" and panel.accept_button.isEnabled()
    first_run = panel.run

    # A second run, cancelled mid-epoch.
    fill_form(panel, tiny_csv.parent, epochs=3)
    panel.start()
    qtbot.waitUntil(lambda: len(panel.curves.loss_points["total"][0]) >= 1, timeout=300000)
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running() and panel.worker is None, timeout=300000)
    assert panel.status == "cancelled" and panel.run.resumable() and panel.resume_button.isEnabled()
    assert len(panel.curves.loss_points["total"][0]) < 9  # stopped before the end of 3 epochs

    # "Restart": a new window finds the interrupted run and resumes it.
    win.close()
    win2 = make_window(qtbot, settings)
    panel2 = win2.open_finetune()
    assert panel2.resume_button.isEnabled() and panel2.resumable_runs()[0].dir == panel.run.dir
    panel2.resume_latest()
    qtbot.waitUntil(lambda: not panel2.running() and panel2.worker is None, timeout=600000)
    assert panel2.status == "finished"

    # Accept the model of the first run: installed as a new file, active, used.
    panel2.run, panel2.comparison = first_run, cmp
    installed = panel2.accept_new()
    assert installed is not None and installed != DEFAULT_MODEL and installed.is_file()
    assert win2.model == installed and file_sha256(installed) == file_sha256(first_run.best)
    assert file_sha256(DEFAULT_MODEL) == cmp["previous"]["sha256"]  # the previous model is untouched
    win2.show_image(sorted((XRAY / "images").glob("*.png"))[0])
    qtbot.waitUntil(lambda: win2.viewer.image is not None and not win2.loading(), timeout=60000)
    win2.analyse()
    qtbot.waitUntil(lambda: win2.prediction is not None, timeout=120000)
    assert win2.prediction.model.sha256 == file_sha256(installed)
    from msfm_desktop.settings import AppSettings

    assert AppSettings(QSettings(settings.fileName(), QSettings.Format.IniFormat)).model == installed  # persisted


def test_model_manager_switches_verifies_and_deletes(qtbot, tmp_path, settings, resnet18_model):
    from engine.checkpoint import save_checkpoint
    from engine.resources import DEFAULT_MODEL

    win = make_window(qtbot, settings)
    ck = tmp_path / "ft.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-ft", "metrics": {"auc": 0.61, "kappa": 0.2}})
    m = win.store.install(ck, "Fine-tuned on ward 7", data={"source": "ward7", "layout": "class folders", "n_train": 10, "n_val": 4, "train_counts": {"0": 6, "1": 4}}, metrics={"auc": 0.61, "kappa": 0.2})
    dialog = win.open_models()
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2 and dialog.table.item(0, 0).text() == "●"  # the default is active
    assert dialog.table.item(1, 1).text() == "Fine-tuned on ward 7" and dialog.table.item(1, 4).text() == "0.610"
    assert "ward7 (class folders): 10 train (4 abnormal), 4 val" == dialog.table.item(1, 3).text()
    dialog.select("default")
    assert not dialog.delete_button.isEnabled()
    dialog.select(m.id)
    assert dialog.use_selected() and win.model == m.path and "Fine-tuned on ward 7" in win.info.text()
    assert dialog.table.item(1, 0).text() == "●"
    # A model file changed after install is refused, by the dialog and by the window.
    data = m.path.read_bytes()
    m.path.write_bytes(data[:-8] + bytes(8))
    dialog.select(m.id)
    assert not dialog.use_selected() and "no longer matches" in dialog.message.text()
    win.apply_settings()
    win.model = None  # force a fresh description of the tampered file
    win.activate_model(m.path)
    assert win.model_info is None and "changed since it was installed" in win.info.text()
    m.path.write_bytes(data)
    dialog.select(m.id)
    assert dialog.delete_selected(confirm=False)
    assert not m.path.exists() and win.model == DEFAULT_MODEL and dialog.table.rowCount() == 1
