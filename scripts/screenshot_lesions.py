"""Screenshots of the finding on fractured validation radiographs, with the true box
(boxes.csv) drawn beside the lesion box, for looking at by eye (issue 17).

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot_lesions.py OUT_DIR [FILE ...]

FILEs are FracAtlas val image names (default: a forearm, two hands, a foot, a leg, the hips
and the shoulders). Writes OUT_DIR/<name>.png (the whole window) and prints, per image,
the probability, the verdict, whether the peak is inside the true box, and the lesion and
region IoU with it. The whole study is analysed first, so the summary beside each finding
covers every image.
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from screenshot_tour import wait  # noqa: E402  (this folder is on sys.path when run as a script)

REPO = Path(__file__).resolve().parents[1]
XRAY = REPO.parent / "shared" / "data" / "xray"
DEFAULT = ["IMG0000188.png", "IMG0000206.png", "IMG0000599.png", "IMG0001980.png", "IMG0002443.png"]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "lesions")
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in csv.DictReader(open(XRAY / "labels.csv")) if r["split"] == "val" and r["label"] == "1"]
    names = sys.argv[2:] or DEFAULT + [r["file"] for r in rows if r["body_part"] in ("leg+hip", "hand+shoulder")]
    tmp = Path(tempfile.mkdtemp())
    study = tmp / "val fractures"
    (study / "images").mkdir(parents=True)
    for n in names:
        shutil.copy(XRAY / "images" / n, study / "images" / n)
    with open(XRAY / "boxes.csv") as src, open(study / "boxes.csv", "w") as dst:
        dst.writelines(line for i, line in enumerate(src) if i == 0 or line.split(",")[0] in names)

    app = QApplication.instance() or QApplication(sys.argv)
    from engine.resources import DEFAULT_MODEL
    from msfm_desktop.app import build_window

    win = build_window(None, model=DEFAULT_MODEL, settings=QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    win.resize(1400, 880)
    win.show()
    win.open_path(study)
    wait(app, lambda: win._scan is None and not win.scanning() and not win.loading())
    # The whole study first, as a reader would: the summary then covers every image instead
    # of reading "INCOMPLETE" while the screenshots are taken one image at a time.
    win.analyse_study()
    wait(app, lambda: not win.analysing_study(), timeout=60.0 + 30.0 * len(names))
    for n in names:
        win.show_image(study / "images" / n)
        wait(app, lambda: win.viewer.image is not None and win.viewer.image.source.name == n and not win.loading())
        win.grab().save(str(out / n))
        p = win.prediction
        if p is None:  # the study run stored why (outside intended use, failed): its row and findings say so
            print(f"{n}: no finding: {getattr(win.session.result(win.session.current), 'reason', 'not analysed')}")
            continue
        body = next(r["body_part"] for r in rows if r["file"] == n)
        findings = win.findings.text.text()
        ref = findings[findings.find("Reference:"):].split("<br>")[0]
        print(f"{n} ({body}): p={p.probability:.3f} {win.verdict}; {ref}")
    win.close()


if __name__ == "__main__":
    main()
