"""Screenshots of the reading workflow's safety states, for looking at by eye (issue 16).

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot_tour.py OUT_DIR

With the active default model it writes:
  1-second-study.png   a second study opened after an analysed one (no trace of the first)
  2-chest-refused.png  a chest CR refused as outside the model's intended use
  3-borderline.png     a result inside the borderline band (shown as BORDERLINE)
  4-normal.png         a normal result with toned-down evidence
  5-table-row.png      a study-table row opened with its cached result
  6-multiframe.png     a multi-frame image with its frame indicator
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def wait(app: QApplication, cond, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    app = QApplication.instance() or QApplication(sys.argv)
    from engine.resources import DEFAULT_MODEL, DEMO_STUDY
    from msfm_desktop.app import build_window

    win = build_window(None, model=DEFAULT_MODEL, settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    win.resize(1400, 880)
    win.show()

    def opened(path) -> None:
        win.open_path(path)
        wait(app, lambda: win._scan is None and not win.scanning() and not win.loading() and (win.viewer.image is not None or win.viewer.message_text()))

    def analysed_study() -> None:
        win.analyse_study()
        wait(app, lambda: win.session.run is not None and win.session.run.finished)

    def shot(name: str) -> None:
        wait(app, lambda: not win.loading() and not win.analysing(), 120)
        win.grab().save(str(out / name))
        print("wrote", out / name)

    # 1. The demo study analysed, then another patient's DICOM study opened.
    opened(DEMO_STUDY)
    analysed_study()
    study = tmp / "Hip study"
    study.mkdir()
    shutil.copy(SHARED / "dicom" / "RG2_J2KI.dcm", study / "RG2_J2KI.dcm")
    opened(study)
    shot("1-second-study.png")

    # 2. A chest CR: outside the intended use.
    chest = tmp / "Chest study"
    chest.mkdir()
    shutil.copy(SHARED / "dicom" / "RG1_J2KI.dcm", chest / "RG1_J2KI.dcm")
    opened(chest)
    win.analyse()
    wait(app, lambda: win.session.result(win.session.current) is not None)
    shot("2-chest-refused.png")

    # 3-5. The demo study: a borderline result, a normal one, a row opened from the table.
    opened(DEMO_STUDY)
    analysed_study()
    cal = win.calibration
    preds = win.session.predictions()
    normal = min(preds, key=lambda p: p.probability)
    win.show_image(normal.file)
    wait(app, lambda: win.prediction is not None and win.prediction.file == normal.file)
    shot("4-normal.png")
    top = max(range(win.summary.table.rowCount()), key=lambda r: float(win.summary.row_texts(r)[3] or -1))
    win.summary.table.selectRow(top)
    win.summary.open_row(top)
    wait(app, lambda: win.prediction is not None and win.prediction.file.endswith(win.summary.row_texts(top)[2]))
    shot("5-table-row.png")

    # 3. A real borderline result: the first val radiographs until one falls in the band.
    import csv

    val = tmp / "val"
    val.mkdir()
    rows = [r for r in csv.DictReader(open(SHARED / "xray" / "labels.csv")) if r["split"] == "val"][:60]
    for r in rows:
        shutil.copy(SHARED / "xray" / "images" / r["file"], val / r["file"])
    opened(val)
    analysed_study()
    preds = win.session.predictions()
    closest = min(preds, key=lambda p: abs(p.probability - cal.default.threshold))
    win.show_image(closest.file)
    wait(app, lambda: win.prediction is not None and win.prediction.file == closest.file)
    if cal.verdict(closest.probability) != "borderline":
        print(f"no val image of the first {len(rows)} in the band; nearest p={closest.probability:.3f}: drawn moved into the band")
        p = replace(closest, probability=cal.default.threshold + 0.001)
        win.session.store(win.session.current, p)
        win.show_result(win.session.current, p)
    shot("3-borderline.png")

    # 6. A multi-frame MR (viewable, not analysable): the frame indicator.
    opened(SHARED / "dicom" / "pydicom-data_emri_small_jpeg_ls_lossless.dcm")
    win.step_frame(3)
    wait(app, lambda: win.viewer.image is not None and win.viewer.image.frame == 3)
    shot("6-multiframe.png")
    win.close()


if __name__ == "__main__":
    main()
