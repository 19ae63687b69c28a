"""``msfm-desktop --self-check SCREENSHOT.png``: prove an installation works end to end.

Hospital IT deploys the bundle on machines without Python; this is how they (and
``tests/test_installer.py``) check one: the real window opens a study (the bundled demo by
default), decodes its first image in the decoder process, runs the model on it, saves a
picture of the window and prints a JSON summary on stdout. Exit status 0 when all of that
happened, 1 (with the reason) when anything failed or it took longer than ``timeout_s``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

POLL_MS = 100
SETTLE_MS = 500  # lets the overlays paint before the window is grabbed


class SelfCheck(QObject):
    """Drives ``window`` (a :class:`~msfm_desktop.app.MainWindow` that is opening a study)
    through decode → analyse → screenshot, polling its state from the UI thread."""

    def __init__(self, window, screenshot: Path, timeout_s: float = 600.0, splash_unix: float | None = None) -> None:
        super().__init__(window)
        self.win = window
        self.screenshot = Path(screenshot)
        self.deadline = time.monotonic() + timeout_s
        self.started = time.monotonic()
        self.splash_unix = splash_unix  # when the start-up picture was on screen, if there was one
        self.shown_unix: float | None = None  # first event-loop turn: the window is on screen
        self.analysed_unix: float | None = None
        self.asked_analysis = False
        self.result: int | None = None
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._poll)
        self.timer.start(POLL_MS)

    def _finish(self, code: int, summary: dict) -> None:
        self.timer.stop()
        self.result = code
        print(json.dumps(summary, indent=2), flush=True)
        QApplication.instance().exit(code)

    def _fail(self, reason: str) -> None:
        self._finish(1, {"ok": False, "study": self.win.study, "error": reason})

    def _poll(self) -> None:
        w = self.win
        if self.shown_unix is None:
            self.shown_unix = time.time()
        if time.monotonic() > self.deadline:
            return self._fail("timed out: " + ("scanning" if w.scanning() else "loading" if w.loading() else "analysing"))
        if w.scanning() or w.index is None:
            return
        if not w.index.images():
            return self._fail(f"no usable image in {w.study}")
        if w.loading() or w.current is None:
            return
        if w.viewer.image is None or w.viewer.image.source != w.current:
            # The decode result reaches the window as a queued signal, possibly after the
            # load thread has ended: wait for it, unless the file was listed as a problem.
            reason = w.problems.reason_for(w.current)
            return self._fail(f"cannot show {w.current}: {reason}") if reason else None
        if w.analysis_error is not None:
            return self._fail(f"analysis failed: {w.analysis_error}")
        outside = w.session.result(w.session.current)
        if type(outside).__name__ == "OutOfScopeResult":
            return self._fail(f"{w.current} is outside the model's intended use: {outside.reason}")
        if w.prediction is None:
            if not self.asked_analysis and not w.analysing():
                self.asked_analysis = True
                w.analyse()
            return
        self.analysed_unix = time.time()
        self.timer.stop()
        QTimer.singleShot(SETTLE_MS, self._grab)

    def _grab(self) -> None:
        w, p = self.win, self.win.prediction
        self.screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not w.grab().save(str(self.screenshot)):
            return self._fail(f"cannot write {self.screenshot}")
        self._finish(0, {
            "ok": True,
            "study": w.study,
            "images": len(w.index.images()),
            "problems": [f"{q.path}: {q.reason}" for q in w.index.problems],
            "image": p.file,
            "probability": round(p.probability, 4),
            "label": "abnormal" if p.label == 1 else "normal",
            "fused_box_xyxy": [round(v, 1) for v in p.fused_box],
            "device": w.run_info.get("device", ""),
            # False when the analysis ran torch-free (engine.lite): what a start costs depends on it.
            "torch_loaded": "torch" in sys.modules,
            "model": w.model_line,
            "screenshot": str(self.screenshot),
            "platform": QApplication.platformName(),
            "seconds": round(time.monotonic() - self.started, 2),
            # Wall-clock moments, for benchmarks/bench_start.py to measure from the launch.
            "splash_unix": self.splash_unix,
            "shown_unix": self.shown_unix,
            "analysed_unix": self.analysed_unix,
        })
