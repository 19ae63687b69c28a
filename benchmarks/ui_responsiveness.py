"""UI responsiveness: the longest event-loop stall while the app works.

A 10 ms QTimer probes the event loop of a real (offscreen) main window while it opens a
study (scan + thumbnails), analyses one image, analyses the whole study with the given
model, and fine-tunes that model for a few steps on ``--train-data`` (default: the
shared FracAtlas labels; a few steps and 16 held-out images). Each phase reports its
tick count and its longest gap beside the targets (the desktop issue asks for no stall
above 100 ms; the performance issue for 50 ms) and the gap as a multiple of the probe.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/ui_responsiveness.py [STUDY] [--checkpoint default] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

PROBE_MS = 10
TARGETS_MS = (100, 50)


def measure(study: str, checkpoint: str = "default", train_data: str = "", train_steps: int = 0, train_size: int | None = None) -> list[dict]:
    """One dict per phase: phase, seconds, ticks, longest_gap_ms."""
    from PySide6.QtCore import QCoreApplication, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.resources import resolve_checkpoint
    from msfm_desktop.app import build_window

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = tempfile.TemporaryDirectory()
    os.environ["MSFM_DATA_DIR"] = str(Path(tmp.name) / "user-data")  # runs go to a scratch folder, not the user's
    settings = QSettings(str(Path(tmp.name) / "settings.ini"), QSettings.Format.IniFormat)
    win = build_window(None, model=resolve_checkpoint(checkpoint), settings=settings)
    win.prefs.device = "cpu"
    win.show()

    def run_phase(name: str, start, busy) -> dict:
        ticks: list[float] = []
        timer = QTimer(interval=PROBE_MS)
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start()
        t0 = time.perf_counter()
        start()
        while busy():
            QCoreApplication.processEvents()
            time.sleep(0.001)
        timer.stop()
        wall = time.perf_counter() - t0
        gaps = [b - a for a, b in zip(ticks, ticks[1:])] or [wall]
        return {"phase": name, "seconds": round(wall, 2), "ticks": len(ticks), "longest_gap_ms": round(max(gaps) * 1000, 1)}

    rows = [
        run_phase("open study (scan + thumbnails)", lambda: win.open_path(study),
                  lambda: win.scanning() or win._scan is not None or win.loading() or win.thumbs.pending() > 0),
        # Until the shown image has an answer of any kind: a finding, "outside the intended
        # use" (the first file of ../shared/data/dicom is not a radiograph) or a failure.
        run_phase("analyse one image", win.analyse,
                  lambda: win.session.result(win.session.current) is None and win.analysis_error is None),
        run_phase("analyse the study (batched)", win.analyse_study, win.analysing_study),
    ]
    if train_steps > 0 and train_data and Path(train_data).exists():
        from engine.library.finetune import FineTuneConfig

        panel = win.open_finetune()
        ft = FineTuneConfig(data=train_data, base=str(win.model), epochs=1, device="cpu", max_steps_per_epoch=train_steps, limit_val=16, input_size=train_size)
        rows.append(run_phase(f"fine-tune ({train_steps} steps + validation)", lambda: panel.start(ft), panel.running))
    win.close()
    app.processEvents()
    tmp.cleanup()
    return rows


def run(study: str | None = None, train_steps: int = 6) -> list:
    """Suite entry: the longest stall of each phase as a row against the 50 ms target."""
    from common import DICOM, Row, print_rows

    phases = measure(study or str(DICOM), "default", str(REPO.parent / "shared" / "data" / "xray"), train_steps, train_size=160)
    rows = [Row("ui", f"longest stall: {r['phase']}", r["longest_gap_ms"], 50.0, "<=", "ms", f"{r['ticks']} ticks in {r['seconds']:.1f} s")
            for r in phases]
    print_rows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    from engine.resources import DEMO_STUDY

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", nargs="?", default=str(DEMO_STUDY))
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--train-data", default=str(REPO.parent / "shared" / "data" / "xray"))
    ap.add_argument("--train-steps", type=int, default=10)
    args = ap.parse_args(argv)
    rows = measure(args.study, args.checkpoint, args.train_data, args.train_steps)
    print(f"{'phase':34} {'s':>6} {'ticks':>6} {'longest gap':>12} {'gap/probe':>10}  targets")
    for r in rows:
        verdict = "  ".join(f"<{t} ms: {'yes' if r['longest_gap_ms'] < t else 'NO'}" for t in TARGETS_MS)
        print(f"{r['phase']:34} {r['seconds']:6.2f} {r['ticks']:6d} {r['longest_gap_ms']:9.1f} ms {r['longest_gap_ms'] / PROBE_MS:9.1f}x  {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"probe_ms": PROBE_MS, "study": args.study, "phases": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
