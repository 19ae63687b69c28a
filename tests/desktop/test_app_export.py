"""File ▸ Export in the app: the analysed DICOM image exported as SC + SR + GSPS + CSV,
verified by C-ECHO from the Settings dialog and sent to a real storescp, in a worker."""

import pydicom
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from tests.conftest import DICOM, dataset_bytes, dciodvfy_errors  # noqa: E402


def test_export_dialog_writes_and_sends_to_pacs(qtbot, tmp_path, resnet18_model, storescp):
    from engine.model.checkpoint import save_checkpoint
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
    assert summary["errors"] == 0 and len(summary["files"]) == 4
    names = sorted(p.name for p in (tmp_path / "exports").iterdir() if p.suffix == ".dcm")
    assert names[:3] == ["RG3_UNC.msfm-gsps.dcm", "RG3_UNC.msfm-sc.dcm", "RG3_UNC.msfm-sr.dcm"]
    assert names[3].startswith("msfm-report-") and names[3].endswith(".msfm-report.dcm")  # the report, in the study
    assert len(list((tmp_path / "exports").glob("msfm-findings-*.csv"))) == 1
    assert len(list((tmp_path / "exports").glob("msfm-report-*.pdf"))) == 1
    assert [r.ok for r in summary["sent"]] == [True] * 4
    got = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in received.iterdir()}
    for f in summary["files"]:
        assert dciodvfy_errors(f) == []
        assert dataset_bytes(got[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID]) == dataset_bytes(f)
    rows = [export.log.item(i).text() for i in range(export.log.count())]
    assert any(r.startswith("✔ PACS RG3_UNC.msfm-sr.dcm: stored") for r in rows) and rows[-1].startswith("Done: 4 DICOM file(s), 1 report(s), 0 error(s), 4 of 4 sent")
    assert win.outbox_button.isHidden()


def test_png_export_names_the_given_patient_and_what_the_pacs_missed_waits_in_the_outbox(qtbot, tmp_path, resnet18_model, storescp):
    """A PNG has no patient: the dialog takes one; a PACS that is down leaves every object in
    the outbox, which a new window (a restart) still shows and sends when the PACS is back."""
    import shutil
    import subprocess

    from engine.model.checkpoint import save_checkpoint
    from msfm_desktop.app import build_window
    from tests.conftest import XRAY, free_port

    port, received = storescp
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    study = tmp_path / "study"
    study.mkdir()
    png = shutil.copy(sorted((XRAY / "images").glob("*.png"))[0], study)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = build_window(None, model=ck, settings=settings)
    qtbot.addWidget(win)
    win.prefs.set_pacs("TESTPACS", "127.0.0.1", free_port())  # nothing listens there
    win.show_image(png)
    qtbot.waitUntil(lambda: win.viewer.image is not None and not win.loading(), timeout=60000)
    win.analyse()
    qtbot.waitUntil(lambda: win.prediction is not None, timeout=120000)
    export = win.open_export()
    qtbot.addWidget(export)
    export.folder.setText(str(tmp_path / "out"))
    assert export.patient_id.isEnabled()
    export.patient_name.setText("Doe\\Jane")
    assert not export.start(confirm=False) and "patient name" in export.log.item(export.log.count() - 1).text()
    export.patient_id.setText("HOSP-0042")
    export.patient_name.setText("Doe^Jane")
    export.send.setChecked(True)
    assert export.start(confirm=False)
    qtbot.waitUntil(lambda: export.result_summary is not None, timeout=120000)
    summary = export.result_summary
    assert len(summary["files"]) == 5 and summary["queued"] == 5  # image, SC, SR, GSPS, report
    assert not any(r.ok for r in summary["sent"])
    for f in summary["files"]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert (ds.PatientID, str(ds.PatientName)) == ("HOSP-0042", "Doe^Jane")
    (pdf,) = (tmp_path / "out").glob("msfm-report-*.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Doe Jane, ID HOSP-0042" in text
    assert not win.outbox_button.isHidden() and win.outbox_button.text() == "PACS outbox: 5 waiting"
    win.close()

    again = build_window(None, model=ck, settings=settings)  # the next start
    qtbot.addWidget(again)
    assert not again.outbox_button.isHidden() and again.refresh_outbox() == 5
    again.prefs.set_pacs("TESTPACS", "127.0.0.1", port)
    box = again.open_outbox()
    qtbot.addWidget(box)
    assert box.table.rowCount() == 5 and "cannot connect" in box.table.item(0, 3).text()
    assert box.send_now()
    qtbot.waitUntil(lambda: box.last_results is not None, timeout=60000)
    assert [r.ok for r in box.last_results] == [True] * 5 and box.table.rowCount() == 0
    assert len(list(received.iterdir())) == 5
    box.accept()
    assert again.outbox_button.isHidden()
