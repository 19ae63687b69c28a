"""One-click fine-tuning in the app (real widgets offscreen, real FracAtlas images, the
bundled default model as the starting point): curves fill, a second run cancels
mid-epoch and resumes after a "restart", the UI keeps running, and accepting the new
model makes the next prediction carry its hash. A folder whose images do not resolve
(or too few per class) cannot start a run; Accept needs a held-out comparison, and a
model that scored lower needs the user's explicit Yes."""

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

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


def wait_preview(qtbot, panel) -> None:
    """The folder is checked (every image decoded) in a worker thread."""
    qtbot.waitUntil(lambda: not panel.previewing() and panel.last_preview is not None, timeout=60000)


def answer_questions(monkeypatch, reply) -> list[str]:
    """Answer every QMessageBox.question with ``reply``; returns the texts asked."""
    asked: list[str] = []

    def question(parent, title, text, *args, **kwargs):
        asked.append(text)
        return reply

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def fill_form(qtbot, panel, folder, epochs: int) -> None:
    panel.folder.setText(str(folder))
    panel.refresh_preview()
    wait_preview(qtbot, panel)
    panel.advanced.setChecked(True)
    panel.epochs.setValue(epochs)
    panel.batch.setValue(4)
    panel.input_size.setValue(128)  # tiny input: a CPU test


def test_fine_tune_cancel_resume_and_accept(qtbot, tmp_path, tiny_csv, settings, monkeypatch):
    from engine.library.finetune import assess_comparison
    from engine.model.checkpoint import file_sha256
    from engine.resources import DEFAULT_MODEL

    win = make_window(qtbot, settings)
    assert win.model == DEFAULT_MODEL
    panel = win.open_finetune()
    assert not panel.start_button.isEnabled()  # no folder yet
    fill_form(qtbot, panel, tiny_csv.parent, epochs=1)
    assert "20 images — 10 normal, 10 abnormal (all found and decoded)" in panel.preview_label.text()  # the tiny CSV: 12 train + 8 val
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
    assert panel.table.item(0, 0).text() == "8 (4 / 4)" and panel.accept_button.isEnabled()
    assert "[" in panel.table.item(1, 1).text()  # AUC with its interval
    first_run = panel.run

    # A second run, cancelled mid-epoch.
    fill_form(qtbot, panel, tiny_csv.parent, epochs=3)
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
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    assert panel2.accept_new()  # the install runs in a worker, off the UI thread
    qtbot.waitUntil(lambda: not panel2.installing(), timeout=120000)
    installed = panel2.installed_path
    assert len(asked) == (1 if assess_comparison(cmp).worse else 0)  # asked exactly when the new model scored lower
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
    from engine.model.checkpoint import save_checkpoint
    from engine.resources import DEFAULT_MODEL

    win = make_window(qtbot, settings)
    ck = tmp_path / "ft.pt"
    from engine.model.checkpoint import describe_checkpoint
    from msfm_desktop.model_manager import metric_with_n

    save_checkpoint(ck, resnet18_model, {"name": "MSFM-ft", "metrics": {"auc": 0.61, "kappa": 0.2, "n": 4}})
    m = win.store.install(ck, "Fine-tuned on ward 7", data={"source": "ward7", "layout": "class folders", "n_train": 10, "n_val": 4, "train_counts": {"0": 6, "1": 4}}, metrics={"auc": 0.61, "kappa": 0.2, "n": 4})
    dialog = win.open_models()
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 2 and dialog.table.item(0, 0).text() == "●"  # the default is active
    # n beside every metric: the bundled model's validation set and the fine-tuned one's.
    bundled = describe_checkpoint(DEFAULT_MODEL).metrics
    assert dialog.table.item(0, 4).text() == f"{bundled['auc']:.3f} (n={bundled['n']})"
    assert dialog.table.item(0, 5).text() == f"{bundled['kappa']:.3f} (n={bundled['n']})"
    assert dialog.table.item(1, 1).text() == "Fine-tuned on ward 7" and dialog.table.item(1, 4).text() == "0.610 (n=4)"
    assert dialog.table.item(1, 5).text() == "0.200 (n=4)" and metric_with_n(0.5, None) == "0.500 (n unknown)"
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


def unresolvable_folder(root, xray_rows):
    """A labels.csv of 40 real FracAtlas names (20 normal, 20 abnormal) copied without its images."""
    from tests.engine.library.test_finetune import unresolvable_csv

    return unresolvable_csv(root, xray_rows)


def test_fine_tune_on_unresolvable_paths_cannot_start(qtbot, tmp_path, xray_rows, settings):
    from engine.library.finetune import MIN_PER_CLASS, FineTuneConfig
    from engine.resources import DEFAULT_MODEL

    win = make_window(qtbot, settings)
    panel = win.open_finetune()
    folder = unresolvable_folder(tmp_path / "copied-csv", xray_rows)
    panel.folder.setText(str(folder))
    panel.refresh_preview()
    assert panel.previewing() and not panel.start_button.isEnabled()  # checked off the UI thread
    wait_preview(qtbot, panel)
    text = panel.preview_label.text()
    assert "labels-csv: 0 images — 0 normal, 0 abnormal (40 of 40 listed cannot be used)" in text
    assert "⚠ 40 of 40 listed images not found" in text and xray_rows[0]["file"] in text
    assert "✗ Cannot fine-tune: none of the 40 listed images can be used (40 not found, 0 could not be decoded)" in text
    assert not panel.start_button.isEnabled() and "none of the 40 listed images" in panel.start_button.toolTip()
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)  # disabled: nothing happens
    panel.start()  # and the slot itself refuses too
    assert not panel.running() and panel.worker is None and panel.run is None
    assert panel.state.text().startswith("Cannot fine-tune: none of the 40 listed images can be used")
    assert not win.store.runs_dir.exists() or not any(win.store.runs_dir.iterdir())  # no run was recorded

    # A start with a configuration of a folder not checked yet checks it first, then refuses.
    other = unresolvable_folder(tmp_path / "another-copy", xray_rows)
    panel.start(FineTuneConfig(data=str(other), base=str(DEFAULT_MODEL), device="cpu"))
    assert panel.running()  # checking, not training
    qtbot.waitUntil(lambda: not panel.running(), timeout=60000)
    assert panel.worker is None and panel.run is None and "Cannot fine-tune: none of the 40 listed images" in panel.state.text()
    assert not win.store.runs_dir.exists() or not any(win.store.runs_dir.iterdir())

    # Real images, one short of the minimum for the normal class (plus an unreadable file): still no start.
    pngs = sorted((XRAY / "images").glob("*.png"))
    few = tmp_path / "few"
    for cls, files in (("normal", pngs[: MIN_PER_CLASS - 1]), ("abnormal", pngs[MIN_PER_CLASS: 2 * MIN_PER_CLASS])):
        (few / cls).mkdir(parents=True)
        for f in files:
            (few / cls / f.name).symlink_to(f)
    (few / "normal" / "broken.png").write_bytes(pngs[-1].read_bytes()[:300])
    panel.folder.setText(str(few))
    panel.refresh_preview()
    wait_preview(qtbot, panel)
    text = panel.preview_label.text()
    assert f"class-folders: {2 * MIN_PER_CLASS - 1} images — {MIN_PER_CLASS - 1} normal, {MIN_PER_CLASS} abnormal (1 of {2 * MIN_PER_CLASS} listed cannot be used)" in text
    assert "could not be decoded" in text and "broken.png" in text
    assert f"✗ Cannot fine-tune: too few usable images: {MIN_PER_CLASS - 1} normal and {MIN_PER_CLASS} abnormal" in text
    assert not panel.start_button.isEnabled() and "too few usable images" in panel.start_button.toolTip()


def test_a_worse_model_needs_confirmation(qtbot, tmp_path, tiny_csv, settings, resnet18_model, monkeypatch):
    from engine.library.finetune import FineTuneConfig, FineTuneRun, compare_predictions
    from engine.model.checkpoint import file_sha256, save_checkpoint
    from engine.resources import DEFAULT_MODEL

    win = make_window(qtbot, settings)
    panel = win.open_finetune()
    # A finished run whose best.pt is a real checkpoint (training is covered above; here the decision is tested).
    run = FineTuneRun.create(win.store, FineTuneConfig(data=str(tiny_csv.parent), base=str(DEFAULT_MODEL), device="cpu"))
    save_checkpoint(run.best, resnet18_model, {"name": "MSFM-ft", "metrics": {"auc": 0.55, "kappa": 0.1, "n": 8}})
    run.save(status="finished")
    panel.run = run

    def finish(cmp) -> None:  # what the training task's messages deliver
        from msfm_desktop.training import ChildDone, Compared

        if cmp is not None:
            panel._on_message(Compared(cmp))
        panel.comparison = cmp
        panel._on_finished(ChildDone("finished", ""))

    # Finished without a usable comparison (held-out n = 0): Accept stays disabled and says why.
    finish(None)
    assert not panel.accept_button.isEnabled() and panel.reject_button.isEnabled()
    assert "cannot be accepted: the new model has not been compared" in panel.state.text()
    empty = compare_predictions([], [], [], 0.5, 0.5)
    finish(empty)
    assert not panel.accept_button.isEnabled() and "(n = 0)" in panel.accept_button.toolTip()
    assert "—" in panel.table.item(0, 1).text() and panel.accept_new() is None and win.model == DEFAULT_MODEL

    # The new model is worse on AUC and κ (n = 8): Accept asks, showing n and both intervals.
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    current = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    new = [0.5, 0.6, 0.2, 0.7, 0.3, 0.55, 0.8, 0.4]
    cmp = compare_predictions(y, current, new, 0.5, 0.5)
    cmp["previous"]["sha256"], cmp["new"]["sha256"] = file_sha256(DEFAULT_MODEL), file_sha256(run.best)
    assert cmp["new"]["auc"] < cmp["previous"]["auc"] and cmp["new"]["kappa"] < cmp["previous"]["kappa"]
    finish(cmp)
    assert panel.accept_button.isEnabled() and "accepting it asks for confirmation" in panel.state.text()
    assert panel.table.item(0, 0).text() == "8 (4 / 4)" and panel.table.item(1, 0).text() == "8 (4 / 4)"
    lo, hi = cmp["new"]["auc_ci"]
    assert panel.table.item(1, 1).text() == f"{cmp['new']['auc']:.3f} [{lo:.3f}–{hi:.3f}]"

    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.No)
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    assert len(asked) == 1
    question = asked[0]
    assert question.startswith("The new model scored lower than the current model on AUC and κ")
    for who in ("new", "previous"):
        for metric in ("auc", "kappa"):
            lo, hi = cmp[who][f"{metric}_ci"]
            assert f"{cmp[who][metric]:.3f} (95% CI {lo:.3f} to {hi:.3f}, n = 8)" in question
    assert "n = 8 (4 normal, 4 abnormal)" in question and "Difference, new − current: AUC -" in question
    # Declined: nothing installed, the active model unchanged, the decision still open.
    assert win.model == DEFAULT_MODEL and win.store.installed() == []
    assert run.status == "finished" and panel.accept_button.isEnabled() and "Not installed" in panel.state.text()

    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    assert len(asked) == 1
    qtbot.waitUntil(lambda: not panel.installing(), timeout=120000)  # installed in a worker
    (installed,) = win.store.installed()
    assert win.model == installed.path and installed.sha256 == file_sha256(run.best) and panel.run.status == "accepted"
    assert installed.comparison["new"]["auc_ci"] == cmp["new"]["auc_ci"]  # the evidence is kept with the model
    assert not panel.accept_button.isEnabled()

    # Manage models shows the comparison it was accepted on, with n beside every metric.
    dialog = win.open_models()
    qtbot.addWidget(dialog)
    row = next(r for r in range(dialog.table.rowCount()) if dialog.table.item(r, 1).text() == installed.name)
    assert dialog.table.item(row, 4).text() == "0.550 (n=8)" and dialog.table.item(row, 5).text() == "0.100 (n=8)"
    held = dialog.table.item(row, 6)
    assert held.text() == (f"AUC {cmp['new']['auc']:.3f} (n=8) vs {cmp['previous']['auc']:.3f} (n=8), "
                           f"κ {cmp['new']['kappa']:.3f} (n=8) vs {cmp['previous']['kappa']:.3f} (n=8)")
    assert f"[{cmp['new']['auc_ci'][0]:.3f}–{cmp['new']['auc_ci'][1]:.3f}]" in held.toolTip()

    # A model better on both needs no question.
    better = compare_predictions(y, new, current, 0.5, 0.5)
    finish(better)
    asked = answer_questions(monkeypatch, QMessageBox.StandardButton.No)
    assert panel.accept_new() is not None and asked == []
    qtbot.waitUntil(lambda: not panel.installing() and panel.installed_path is not None, timeout=120000)
