"""The desktop main window: real (offscreen) widgets, real scans of the shared data."""

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.conftest import DICOM, XRAY  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def open_and_wait(qtbot, win, path):
    win.open_path(path)
    qtbot.waitUntil(lambda: win._scan is None and not win.scanning(), timeout=60000)


def test_window_names_the_study_and_the_model(qtbot, resnet18_model, tmp_path, settings):
    from engine.model.checkpoint import file_sha256, save_checkpoint
    from msfm_desktop.app import build_window

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    win = build_window(None, model=ck, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.windowTitle().startswith("MSFM Desktop")
    text = win.info.text()
    assert "none opened" in text and "MSFM-test" in text and file_sha256(ck)[:12] in text
    open_and_wait(qtbot, win, tmp_path / "no-such-study")
    assert "no-such-study" in win.info.text()
    assert win.problems.rows() == ["no-such-study — no such file or folder"]


def test_window_says_when_there_is_no_model(qtbot, tmp_path, settings):
    from msfm_desktop.app import build_window

    win = build_window(None, model=tmp_path / "missing.pt", settings=settings)
    qtbot.addWidget(win)
    assert "no model: checkpoint not found" in win.info.text()


def test_open_the_shared_dicom_folder(qtbot, tmp_path, settings):
    from msfm_desktop.app import build_window

    win = build_window(None, model=tmp_path / "missing.pt", settings=settings)
    qtbot.addWidget(win)
    win.show()
    open_and_wait(qtbot, win, DICOM)
    paths = win.browser.image_paths()
    assert len(paths) == 21 and all(p.exists() for p in paths)
    assert any("Doe^Archibald" in win.browser.topLevelItem(i).text(0) for i in range(win.browser.topLevelItemCount()))
    assert win.problems.rows() == ["pydicom_test-SR.dcm — no pixel data (Comprehensive SR Storage); not an image"]
    assert win.recent()[0] == str(DICOM)  # remembered in the (test's own) settings
    assert win.recent_menu.actions()[0].text() == str(DICOM)


def test_cancel_stops_the_scan_and_keeps_the_window_usable(qtbot, tmp_path, settings):
    from engine.io.study import scan_study
    from msfm_desktop.app import build_window
    from msfm_desktop.workers import Task

    task, got = Task(scan_study, [DICOM]), []
    task.returned.connect(lambda index: got.append((task.was_cancelled, index)))
    task.cancel()
    task.run()  # synchronously: a cancelled scan returns at once, partial and marked
    assert got[0][0] is True and got[0][1].cancelled and got[0][1].images() == []
    win = build_window(None, model=tmp_path / "missing.pt", settings=settings)
    qtbot.addWidget(win)
    win.open_path(DICOM)
    win.cancel_scan()
    qtbot.waitUntil(lambda: win._scan is None, timeout=60000)
    open_and_wait(qtbot, win, DICOM)  # a new scan after a cancelled one runs to the end
    assert len(win.browser.image_paths()) == 21 and not win.index.cancelled


def test_viewer_shows_the_image_as_the_engine_loads_it(qtbot, tmp_path, settings):
    import numpy as np
    import pydicom

    from engine.io import load_image
    from msfm_desktop.app import build_window
    from msfm_desktop.viewer import auto_levels

    win = build_window(None, model=tmp_path / "missing.pt", settings=settings)
    qtbot.addWidget(win)
    win.show()
    open_and_wait(qtbot, win, DICOM / "nested_extensionless")
    qtbot.waitUntil(lambda: win.viewer.image is not None and not win.loading(), timeout=60000)
    first = win.browser.image_paths()[0]
    ref = load_image(first, apply_voi=False).pixels
    np.testing.assert_array_equal(win.viewer.item.image, ref)  # row-major, MONOCHROME1 inverted by the engine
    # The header's window is the default preset, and it shows what the model sees.
    assert win.viewer.preset.currentText() == "Header: window 1 (C 1600 / W 2800)"
    assert [win.viewer.preset.itemText(i) for i in range(1, 3)] == ["Auto (histogram)", "Full range"]
    lo, hi = win.viewer.levels
    np.testing.assert_allclose(np.clip((ref - lo) / (hi - lo), 0, 1), load_image(first).pixels, atol=1e-5)
    win.viewer.preset.setCurrentText("Auto (histogram)")
    assert win.viewer.levels == pytest.approx(auto_levels(ref))
    win.viewer.set_inverted(True)
    assert win.viewer.invert_button.isChecked() and win.viewer.item.lut[0] == 255
    r, c = 5, 7
    assert win.viewer.pixel_at(c + 0.5, r + 0.5) == (c, r, pytest.approx(float(ref[r, c])))
    assert win.viewer.pixel_at(-1, 0) is None
    stored = pydicom.dcmread(first).pixel_array[r, c] * 0.684 + 200  # Modality LUT of these files
    assert win.viewer.image.raw_value(float(ref[r, c])) == pytest.approx(stored, abs=0.01)
    assert "Doe^Archibald" in win.viewer.meta_label.text()
    win.step_image(1)  # next image (PageDown)
    qtbot.waitUntil(lambda: not win.loading() and win.viewer.image.source == win.browser.image_paths()[1], timeout=60000)


def test_undecodable_image_goes_to_the_problems_panel(qtbot, tmp_path, settings):
    from msfm_desktop.app import build_window

    win = build_window(None, model=tmp_path / "missing.pt", settings=settings)
    qtbot.addWidget(win)
    open_and_wait(qtbot, win, DICOM / "RG3_JPLY.dcm")
    qtbot.waitUntil(lambda: win.problems.count() == 1 and not win.loading(), timeout=60000)
    assert win.problems.rows()[0].startswith("RG3_JPLY.dcm — cannot decode pixel data (JPEG Extended")
    assert win.viewer.image is None
    # The screen says why there is no image, and whose image it was.
    assert "RG3_JPLY.dcm cannot be shown" in win.viewer.message_text()
    assert "CompressedSamples^RG3" in win.findings.header.text() and "cannot be shown" in win.findings.text.text()


def test_analyse_draws_every_overlay_at_the_prediction_boxes(qtbot, resnet18_model, tmp_path, settings):
    from engine.model.checkpoint import save_checkpoint
    from msfm_desktop.app import build_window
    from msfm_desktop.overlays import LAYERS

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    png = sorted((XRAY / "images").glob("*.png"))[0]
    win = build_window(None, model=ck, settings=settings)
    qtbot.addWidget(win)
    open_and_wait(qtbot, win, png)
    qtbot.waitUntil(lambda: win.viewer.image is not None and not win.loading(), timeout=60000)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    p = win.prediction
    assert win.overlays.boxes("fused") == [pytest.approx(tuple(p.fused_box), abs=1e-3)]
    assert win.overlays.boxes("object") == [pytest.approx(tuple(p.object_box), abs=1e-3)]
    assert win.overlays.boxes("windows") == [pytest.approx(tuple(w.box), abs=1e-3) for w in p.windows]
    # The finding: the lesion box with a marker at the evidence peak, and where it is, in words.
    assert win.overlays.boxes("lesion") == [pytest.approx(tuple(p.lesion_box), abs=1e-3)]
    import pyqtgraph as pg

    (marker,) = [it for it in win.overlays.items["lesion"] if isinstance(it, pg.ScatterPlotItem)]
    assert (marker.data["x"][0], marker.data["y"][0]) == pytest.approx(p.peak)
    lb = p.lesion_box
    assert f"Where: lesion box x {lb[0]:.0f}–{lb[2]:.0f}, y {lb[1]:.0f}–{lb[3]:.0f} px" in win.findings.text.text()
    ev = win.overlays.items["evidence"][0]  # the default heat layer, over the whole image
    r = ev.mapRectToParent(ev.boundingRect())
    assert ev.isVisible() and (r.width(), r.height()) == pytest.approx((p.width, p.height))
    assert not win.overlays.items["cam"][0].isVisible()
    assert f"{p.probability:.3f}" in win.findings.text.text()
    for layer in LAYERS:
        win.layer_actions[layer].setChecked(False)
        assert not any(it.isVisible() for it in win.overlays.items[layer])
    win.toggle_overlays()  # all back on
    assert all(it.isVisible() for layer in LAYERS for it in win.overlays.items[layer])
    win.findings.opacity.setValue(80)
    assert win.overlays.items["cam"][0].opacity() == pytest.approx(0.8 * win.overlays.map_factor)


def test_auto_analyse_setting_analyses_each_opened_image(qtbot, resnet18_model, tmp_path, settings):
    from engine.model.checkpoint import save_checkpoint
    from msfm_desktop.app import build_window

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    win = build_window(None, model=ck, settings=settings)
    qtbot.addWidget(win)
    win.auto_action.setChecked(True)
    assert settings.value("auto_analyse") in (True, "true")  # persisted
    open_and_wait(qtbot, win, sorted((XRAY / "images").glob("*.png"))[1])
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    assert win.prediction.file.endswith(".png")


def test_analyse_study_fills_a_sortable_table_and_reports_undecodable_files(qtbot, resnet18_model, tmp_path, settings):
    import shutil

    from engine.model.checkpoint import save_checkpoint
    from msfm_desktop.app import build_window

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    study = tmp_path / "study"
    study.mkdir()
    for src in sorted((XRAY / "images").glob("*.png"))[:3]:
        shutil.copy(src, study / src.name)
    shutil.copy(DICOM / "RG3_JPLY.dcm", study / "RG3_JPLY.dcm")  # indexes, but cannot be decoded
    win = build_window(None, model=ck, settings=settings)
    qtbot.addWidget(win)
    open_and_wait(qtbot, win, study)
    qtbot.waitUntil(lambda: not win.loading(), timeout=60000)
    win.problems.clear()
    win.analyse_study()
    qtbot.waitUntil(lambda: not win.analysing_study() and win._study_run is not None, timeout=180000)
    qtbot.waitUntil(lambda: win.summary.table.rowCount() == 4, timeout=10000)  # 3 labelled, 1 that failed
    probs = sorted(p.probability for p in win.session.predictions())
    assert len(probs) == 3
    # The study verdict is its most abnormal image's, and it names that image.
    assert f"max abnormal probability {max(probs):.3f}" in win.summary.headline.text()
    win.summary.table.sortItems(3)
    shown = [win.summary.table.item(r, 3).text() for r in range(4)]
    assert shown[0] == "" and [float(v) for v in shown[1:]] == pytest.approx([round(v, 3) for v in probs], abs=1e-3)
    assert [r.split(" — ")[0] for r in win.problems.rows()] == ["RG3_JPLY.dcm"]
