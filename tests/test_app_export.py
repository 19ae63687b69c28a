"""File ▸ Export in the app: the analysed DICOM image exported as SC + SR + GSPS + CSV,
verified by C-ECHO from the Settings dialog and sent to a real storescp, in a worker."""

import pydicom
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.conftest import DICOM, dataset_bytes, dciodvfy_errors  # noqa: E402


def test_export_dialog_writes_and_sends_to_pacs(qtbot, tmp_path, resnet18_model, storescp):
    from engine.checkpoint import save_checkpoint
    from msfm_desktop.app import build_window
    from msfm_desktop.settings import SettingsDialog

    port, received = storescp
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = build_window(None, model=ck, settings=settings)
    qtbot.addWidget(win)
    win.prefs.export_dir = tmp_path / "exports"

    dialog = SettingsDialog(win.prefs, win)
    dialog.pacs_ae.setText("TESTPACS")
    dialog.pacs_host.setText("127.0.0.1")
    dialog.pacs_port.setValue(port)
    dialog.verify_pacs()
    qtbot.waitUntil(lambda: dialog.pacs_status.text().startswith(("✔", "✘")), timeout=30000)
    assert dialog.pacs_status.text().startswith("✔") and "answered C-ECHO" in dialog.pacs_status.text()
    dialog.accept()
    assert win.prefs.pacs().port == port

    win.show_image(DICOM / "RG3_UNC.dcm")
    qtbot.waitUntil(lambda: win.viewer.image is not None and not win.loading(), timeout=60000)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    export = win.open_export()
    qtbot.addWidget(export)
    assert export.folder.text() == str(tmp_path / "exports") and export.send.isEnabled()
    export.send.setChecked(True)
    assert export.start(confirm=False)
    qtbot.waitUntil(lambda: export.result_summary is not None, timeout=120000)
    summary = export.result_summary
    assert summary["errors"] == 0 and len(summary["files"]) == 3
    assert sorted(p.name for p in (tmp_path / "exports").iterdir() if p.suffix == ".dcm") == [
        "RG3_UNC.msfm-gsps.dcm", "RG3_UNC.msfm-sc.dcm", "RG3_UNC.msfm-sr.dcm"]
    assert len(list((tmp_path / "exports").glob("msfm-findings-*.csv"))) == 1
    assert [r.ok for r in summary["sent"]] == [True, True, True]
    got = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in received.iterdir()}
    for f in summary["files"]:
        assert dciodvfy_errors(f) == []
        assert dataset_bytes(got[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID]) == dataset_bytes(f)
    rows = [export.log.item(i).text() for i in range(export.log.count())]
    assert any(r.startswith("✔ PACS RG3_UNC.msfm-sr.dcm: stored") for r in rows) and rows[-1].startswith("Done: 3 DICOM file(s), 0 error(s), 3 sent")
