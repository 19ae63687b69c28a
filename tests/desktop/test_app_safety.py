"""Clinical safety in the reading workflow (issue 16), with real widgets (offscreen), real
radiographs and real DICOM: the right patient and image, images outside the intended use
refused, study verdicts by maximum per patient, honest borderline results, toned-down
evidence for normal results, the study table, multi-frame images and the small things."""

import csv
import shutil
from dataclasses import replace

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from tests.conftest import DICOM, XRAY  # noqa: E402
from tests.desktop.test_app_panels import window  # noqa: E402
from tests.desktop.test_app_window import open_and_wait  # noqa: E402


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def calibration(threshold: float = 0.5, half: float = 0.01, sensitive: float | None = None, map_scale=None):
    from engine.model.calibration import Calibration, OperatingPoint

    sens = threshold - 0.1 if sensitive is None else sensitive
    return Calibration(
        source="test validation set", n=40, n_abnormal=20, n_normal=20,
        default=OperatingPoint("default", threshold, 0.75, 0.8), sensitive=OperatingPoint("sensitive", sens, 0.9, 0.6),
        specific=OperatingPoint("specific", threshold + 0.1, 0.5, 0.9), borderline=(threshold - half, threshold + half),
        miss_rate=0.25, map_scale=map_scale, calibrated=True,
    )


@pytest.fixture
def ck(tmp_path, resnet18_model):
    """A small checkpoint whose stored calibration puts the threshold in the middle of
    what this (untrained) model outputs on radiographs, so both verdicts occur."""
    from engine.model.checkpoint import save_checkpoint

    path = tmp_path / "m.pt"
    cal = calibration(0.5)
    save_checkpoint(path, resnet18_model, {"name": "MSFM-test", "calibration": cal.to_dict()})
    return path


def pngs(n: int, start: int = 0) -> list:
    return sorted((XRAY / "images").glob("*.png"))[start:start + n]


def folder(tmp_path, name: str, files) -> "Path":  # noqa: F821
    d = tmp_path / name
    d.mkdir(parents=True)
    for f in files:
        shutil.copy(f, d / f.name)
    return d


def shown(qtbot, win, path=None):
    qtbot.waitUntil(lambda: not win.loading() and win.viewer.image is not None and (path is None or win.viewer.image.source == path), timeout=60000)


def test_a_second_study_leaves_no_trace_of_the_first(qtbot, ck, tmp_path, settings):
    first = folder(tmp_path, "first", pngs(3))
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, first)
    shown(qtbot, win)
    win.analyse_study()
    qtbot.waitUntil(lambda: win.session.run is not None and win.session.run.finished, timeout=180000)
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=10000)
    assert win.summary.table.rowCount() == 3 and win.overlays.boxes("fused")
    first_names = {p.name for p in pngs(3)}

    # Another patient: everything of the first goes at once, before the scan even ends.
    second = DICOM / "nested_extensionless"
    win.open_path(second)
    assert win.session.predictions() == [] and win.summary.table.rowCount() == 0 and win.prediction is None
    assert win.viewer.image is None and not any(win.overlays.items.values()) and win.browser.image_paths() == []
    assert win.findings.header.text() == "No image shown."
    qtbot.waitUntil(lambda: win._scan is None, timeout=60000)
    shown(qtbot, win)
    assert "Doe^Archibald" in win.findings.header.text() and not any(n in win.findings.header.text() for n in first_names)
    assert "Patient Doe^Archibald" in win.findings.header.text() and "Image 6154" in win.findings.header.text()
    export = win.open_export()
    qtbot.addWidget(export)
    assert export.predictions() == [] and export.study_preds == [] and "Doe^Archibald" in export.subject.text()
    assert not any(n in export.subject.text() for n in first_names)
    assert not export.start(confirm=False)  # nothing of the first study can be exported now

    # An empty folder and a file that is no image: the screen is empty and says why.
    empty = tmp_path / "empty"
    empty.mkdir()
    open_and_wait(qtbot, win, empty)
    assert win.viewer.image is None and "no PNG, JPEG or DICOM image in it" in win.viewer.message_text()
    assert "nothing to show: no PNG, JPEG or DICOM image in it" in win.info.text()
    win.analyse()  # Ctrl+R with nothing shown analyses nothing
    assert not win.analysing() and win.statusBar().currentMessage() == "Nothing to analyse: no image is shown."
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    open_and_wait(qtbot, win, text)
    assert "no usable image: 1 file could not be used" in win.viewer.message_text()
    assert win.problems.rows() == ["notes.txt — not a PNG, JPEG or DICOM file"]
    assert win.summary.table.rowCount() == 0 and win.session.predictions() == []


def test_a_late_result_of_the_previous_study_is_dropped(qtbot, ck, tmp_path, settings):
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, folder(tmp_path, "a", pngs(1)))
    shown(qtbot, win)
    old = win.session
    win.analyse()  # still running when the next study opens
    open_and_wait(qtbot, win, folder(tmp_path, "b", pngs(1, start=5)))
    qtbot.waitUntil(lambda: not win.analysing(), timeout=120000)
    qtbot.wait(200)
    assert old.token != win.session.token and win.session.predictions() == [] and win.summary.table.rowCount() == 0


def test_a_click_in_the_tree_opens_the_image_and_the_tree_follows_paging(qtbot, ck, tmp_path, settings):
    files = pngs(2)
    study = folder(tmp_path, "study", files)
    shutil.copy(DICOM / "RG3_JPLY.dcm", study / "zz_undecodable.dcm")
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, study)
    shown(qtbot, win)
    paths = win.browser.image_paths()
    win.browser.setCurrentItem(win.browser._rows[paths[1]])  # a single click
    shown(qtbot, win, paths[1])
    assert paths[1].name in win.findings.header.text()
    win.step_image(-1)  # PgUp: the viewer and the tree move together
    shown(qtbot, win, paths[0])
    assert win.browser.currentItem() is win.browser._rows[paths[0]]
    undecodable = next(p for p in paths if p.name == "zz_undecodable.dcm")
    win.show_image(undecodable)  # paging onto a file that cannot be decoded
    qtbot.waitUntil(lambda: not win.loading() and "cannot be shown" in win.viewer.message_text(), timeout=60000)
    assert win.viewer.image is None and win.browser.currentItem() is win.browser._rows[undecodable]
    assert "CompressedSamples^RG3" in win.findings.header.text() and "cannot be shown or analysed" in win.findings.text.text()
    win.analyse()
    assert not win.analysing()


def test_images_outside_the_intended_use_are_not_labelled(qtbot, ck, tmp_path, settings):
    import cv2
    import numpy as np

    study = folder(tmp_path, "mixed", [DICOM / "RG1_J2KI.dcm", DICOM / "pydicom_CT_small.dcm", DICOM / "pydicom_MR_small_implicit.dcm", pngs(1)[0]])
    shutil.copy(DICOM / "nested_extensionless" / "77654033" / "CR1" / "6154", study / "tiny_cr")
    bars = np.zeros((512, 512), np.uint8)
    for i in range(8):
        bars[:, i * 64:(i + 1) * 64] = i * 36  # a test pattern: grey bars
    cv2.imwrite(str(study / "test_pattern.png"), bars)
    cv2.imwrite(str(study / "tiny.png"), cv2.resize(cv2.imread(str(pngs(1)[0]), cv2.IMREAD_GRAYSCALE), (16, 16)))
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, study)
    shown(qtbot, win)
    win.analyse_study()
    qtbot.waitUntil(lambda: win.session.run is not None and win.session.run.finished, timeout=180000)
    qtbot.waitUntil(lambda: win.summary.table.rowCount() == 7, timeout=10000)
    rows = {win.summary.row_texts(r)[2]: win.summary.row_texts(r) for r in range(7)}
    expected = {"RG1_J2KI.dcm": "body part CHEST", "pydicom_CT_small.dcm": "modality CT", "pydicom_MR_small_implicit.dcm": "modality MR",
                "tiny_cr": "body part CSPINE", "tiny.png": "16 × 16", "test_pattern.png": "test pattern"}
    for name, why in expected.items():
        assert rows[name][4].startswith("outside the model's intended use: ") and why in rows[name][4], rows[name]
        assert rows[name][3] == ""  # no probability, no label
    assert rows[pngs(1)[0].name][3] != ""  # the radiograph is labelled
    assert len(win.session.predictions()) == 1
    # The shown chest CR: the panel refuses it with the reason, and nothing is drawn.
    win.show_image(study / "RG1_J2KI.dcm")
    shown(qtbot, win, study / "RG1_J2KI.dcm")
    qtbot.waitUntil(lambda: "intended use" in win.findings.text.text(), timeout=10000)
    assert "CHEST" in win.findings.text.text() and "ABNORMAL" not in win.findings.text.text()
    assert not any(win.overlays.items.values())
    # The export lists it, with the reason and without a label.
    export = win.open_export()
    qtbot.addWidget(export)
    export.folder.setText(str(tmp_path / "out"))
    export.scope_study.setChecked(False)  # the shown image only
    assert export.start(confirm=False)
    qtbot.waitUntil(lambda: export.result_summary is not None, timeout=60000)
    (csv_file,) = (tmp_path / "out").glob("*.csv")
    (row,) = list(csv.DictReader(open(csv_file)))
    assert row["file"].endswith("RG1_J2KI.dcm") and row["label"] == "" and "CHEST" in row["intended_use"]
    assert not list((tmp_path / "out").glob("*.dcm"))


def test_study_verdict_is_the_maximum_per_patient(qtbot, ck, tmp_path, settings):
    from msfm_desktop.verdicts import group_verdicts

    root = tmp_path / "MURA"
    for i, (patient, study) in enumerate((("patient00001", "study1_positive"), ("patient00001", "study1_positive"), ("patient00002", "study1_negative"))):
        d = root / "XR_HAND" / patient / study
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(pngs(3)[i], d / f"image{i}.png")
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, root)
    shown(qtbot, win)
    win.analyse_study()
    qtbot.waitUntil(lambda: win.session.run is not None and win.session.run.finished, timeout=180000)
    preds = win.session.predictions()
    assert len(preds) == 3
    # Put the threshold between the two images of patient 1: any abnormal image makes the study abnormal.
    p1 = sorted(p.probability for p in preds if "patient00001" in p.file)
    cal = calibration(threshold=(p1[0] + p1[1]) / 2, half=min(1e-4, (p1[1] - p1[0]) / 4))
    patients = group_verdicts(win.session, cal, by="patient")
    assert [g.patient for g in patients] == ["patient00001", "patient00002"]
    assert patients[0].verdict == "abnormal" and patients[0].top_probability == pytest.approx(p1[1])
    assert patients[0].top.path.name == next(p for p in preds if p.probability == p1[1]).file.split("/")[-1]
    assert patients[0].complete and patients[0].n_analysed == 2
    win.model_info = replace(win.model_info, calibration=cal)
    win.summary.show_verdicts(win.session, cal)
    head = win.summary.headline.text()
    assert "Per patient" in head and head.count("patient00001") >= 2 and "ABNORMAL" in head
    assert f"max abnormal probability {p1[1]:.3f}" in head


def test_a_borderline_result_is_not_shown_as_abnormal(qtbot, ck, tmp_path, settings):
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, pngs(1)[0])
    shown(qtbot, win)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    ref, p = win.session.current, win.prediction
    cal = calibration(threshold=0.523, half=0.02, sensitive=0.3)
    verdicts = {}
    for prob in (0.524, 0.6, 0.4, 0.1):
        verdicts[prob] = win.findings.show_prediction(ref, replace(p, probability=prob), cal)
        text = win.findings.text.text()
        assert f"{prob:.3f}" in text and "Known miss rate at the threshold: 25 %" in text
        assert "sensitive ≥ 0.300: sensitivity 90 %, specificity 60 %" in text and "n = 40" in text
    assert verdicts == {0.524: "borderline", 0.6: "abnormal", 0.4: "possible", 0.1: "normal"}
    win.findings.show_prediction(ref, replace(p, probability=0.524), cal)
    assert "BORDERLINE" in win.findings.text.text() and "ABNORMAL" not in win.findings.text.text()
    assert "borderline band 0.503–0.543" in win.findings.text.text()
    assert "Decision support, not a diagnosis." in win.info.text() and win.info.isVisible()


def test_normal_results_are_toned_down_on_the_models_fixed_scale(qtbot, ck, tmp_path, settings):
    from msfm_desktop.overlays import STYLES, TONED_DOWN

    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, pngs(1)[0])
    shown(qtbot, win)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    p = win.prediction
    scale = {"cam": (float(p.maps.cam.min()), float(p.maps.cam.max()) * 4), "a": (0.0, float(p.maps.a.max()) * 4)}
    win.overlays.show(p, "normal", scale)
    cam = win.overlays.items["cam"][0]
    assert tuple(cam.levels) == pytest.approx(scale["cam"])  # the model's scale, not this image's maximum
    assert cam.opacity() == pytest.approx(win.overlays.opacity * STYLES["normal"][2]) and STYLES["normal"][2] < 0.5
    fused = win.overlays.items["fused"][0]
    assert fused.pen().color().name() == TONED_DOWN and fused.pen().style() == Qt.PenStyle.DashLine and fused.opacity() < 0.5
    win.overlays.show(p, "abnormal", scale)
    assert win.overlays.items["fused"][0].pen().style() == Qt.PenStyle.SolidLine and win.overlays.items["fused"][0].opacity() == 1
    # Window labels: rank numbers only, never on top of each other.
    labels = [it for it in win.overlays.items["windows"] if hasattr(it, "textItem")]
    assert [lab.textItem.toPlainText() for lab in labels] == [str(i + 1) for i in range(len(p.windows))]
    pos = [(lab.pos().x(), lab.pos().y()) for lab in labels]
    gap = 0.045 * max(p.width, p.height)
    assert all(not (abs(a[0] - b[0]) < 2 * gap and abs(a[1] - b[1]) < gap) for i, a in enumerate(pos) for b in pos[:i])
    # The export burns in what the viewer shows: the evidence map, the lesion box; no second map.
    export = win.open_export()
    qtbot.addWidget(export)
    assert export.layers["evidence"].isChecked() and export.layers["lesion"].isChecked()
    assert not export.layers["cam"].isChecked() and not export.layers["a"].isChecked()
    win.layer_actions["evidence"].setChecked(False)
    win.layer_actions["cam"].setChecked(True)
    export = win.open_export()
    qtbot.addWidget(export)
    assert export.layers["cam"].isChecked() and not export.layers["evidence"].isChecked()


def test_a_table_row_opens_its_image_with_its_result(qtbot, ck, tmp_path, settings):
    study = folder(tmp_path, "study", pngs(4))
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, study)
    shown(qtbot, win)
    win.analyse_study()
    qtbot.waitUntil(lambda: win.session.run is not None and win.session.run.finished, timeout=180000)
    assert win.summary.table.rowCount() == 4
    r = next(r for r in range(4) if win.summary.row_texts(r)[2] == pngs(4)[2].name)
    assert win.summary.row_texts(r)[0].endswith("(no patient data)") and win.summary.row_texts(r)[1] == "study"
    win.summary.open_row(r)
    shown(qtbot, win, study / pngs(4)[2].name)
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=10000)
    assert not win.analysing()  # the cached result, not a new run
    assert win.prediction.file == str(study / pngs(4)[2].name)
    assert f"{win.prediction.probability:.3f}" in win.findings.text.text() and pngs(4)[2].name in win.findings.header.text()
    # Abnormal rows stand out.
    for r in range(4):
        item = win.summary.table.item(r, 0)
        verdict = win.calibration.verdict(float(win.summary.row_texts(r)[3]))
        assert (item.background().style() != Qt.BrushStyle.NoBrush) == (verdict in ("abnormal", "borderline", "possible"))
    assert win.summary.height() > 4 * win.summary.table.verticalHeader().defaultSectionSize()


def test_multi_frame_images_have_frame_navigation(qtbot, ck, tmp_path, settings):
    mf = DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm"
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, mf)
    shown(qtbot, win)
    assert win.viewer.frame_label.text() == "Frame 1 / 10" and win.viewer.next_frame.isVisible()
    first = win.viewer.image.pixels.copy()
    win.step_frame(1)
    qtbot.waitUntil(lambda: win.viewer.image is not None and win.viewer.image.frame == 1 and not win.loading(), timeout=60000)
    assert win.viewer.frame_label.text() == "Frame 2 / 10" and "frame 2 of 10" in win.findings.header.text()
    assert (win.viewer.image.pixels != first).any()
    win.step_frame(-2)  # wraps round to the last frame
    qtbot.waitUntil(lambda: win.viewer.image is not None and win.viewer.image.frame == 9 and not win.loading(), timeout=60000)


def test_small_things(qtbot, ck, tmp_path, settings):
    win = window(qtbot, settings, ck)
    open_and_wait(qtbot, win, DICOM / "pydicom_CT_small.dcm")
    shown(qtbot, win)
    assert win.statusBar().currentMessage().endswith(": 1 image") and "1 images" not in win.statusBar().currentMessage()
    assert win.viewer.preset.currentText().startswith(("Header:", "CT soft tissue"))
    win.viewer.preset.setCurrentText("CT bone (L 500 / W 2000)")
    v0, v1 = win.viewer.image.value_range
    lo, hi = win.viewer.levels
    assert (v0 + lo * (v1 - v0), v0 + hi * (v1 - v0)) == pytest.approx((-500.0, 1500.0), abs=0.5)
    win.viewer._drag_window(0.05, 0.0)  # a right-drag
    assert win.viewer.preset.currentText() == "Manual (dragged)"
    before = win.viewer.view.viewRect().width()
    win.viewer.zoom(1.25)
    assert win.viewer.view.viewRect().width() == pytest.approx(before / 1.25, rel=1e-3)
    for w in (win.viewer.preset, win.viewer.fit_button, win.viewer.invert_button, win.findings.opacity, win.cancel_button):
        assert w.toolTip()
    # The status bar counts what the Problems panel lists, also as decoding finds more.
    open_and_wait(qtbot, win, DICOM)
    qtbot.waitUntil(lambda: win.problems.count() == 3 and win.thumbs.pending() == 0, timeout=120000)
    assert win.problem_count.text() == "3 problems"
    # A PNG folder is one level in the tree, not "images ▸ images".
    open_and_wait(qtbot, win, folder(tmp_path, "images", pngs(2)))
    top = win.browser.topLevelItem(0)
    study = top.child(0)
    assert study.text(0) == "images" and study.child(0).text(0).endswith(".png")
