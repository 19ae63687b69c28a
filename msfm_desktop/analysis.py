"""Analysis in the main window: the shown image (Ctrl+R, or on open) and the whole study
(Ctrl+Shift+R, with progress in images and Cancel), both run by the window's
:class:`~msfm_desktop.controller.AnalysisController` (which owns the loaded models).

Every result goes into the open study (:class:`~msfm_desktop.session.OpenStudy`) under
the image it belongs to; a result from a worker started for a study the user has since
replaced is dropped. Images outside the model's intended use are not labelled: they get
the reason in the Findings panel, the table and the exports (Settings can allow them for
research use, and then every output marks them).

A mixin of :class:`~msfm_desktop.app.MainWindow`: it uses the window's session, viewer,
overlays, findings, summary, problems panel, progress bar, ``model`` and ``prefs``.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer

from engine.types import Prediction

from .controller import Analysed, AnalysisController
from .session import FailedResult, ImageRef, OutOfScopeResult, StudyRun, plural

#: The study's progress bar, status line and verdict summary are redrawn at most this
#: often. A folder of non-radiographs answers dozens of steps back to back; redrawing after
#: each (the summary regroups every verdict, the bar repaints at once) took 7-10 ms of the
#: event loop per step, and a burst of them stopped the window for 75-150 ms (measured on
#: ../shared/data/dicom). Each image's row still appears with its step.
STUDY_REDRAW_MS = 100


class AnalysisMixin:
    """Per-image and per-study analysis for the main window (one of each at a time)."""

    def _init_analysis(self) -> None:
        self.analysis_error: str | None = None
        self.run_info: dict = {}
        self.verdict: str | None = None  # of the shown result
        self.controller = AnalysisController(self)
        self.controller.analysed.connect(self._on_analysed)
        self.controller.study_step.connect(self._on_study_step)
        self.controller.study_failed.connect(self._on_study_failed)
        self.controller.study_done.connect(self._on_study_done)
        self._study_run: bool | None = None  # True once a study analysis was started in this window
        self._progress_due: tuple[int, int, int] | None = None  # (token, done, total) not yet drawn
        self._progress_timer = QTimer(self, singleShot=True, interval=STUDY_REDRAW_MS)
        self._progress_timer.timeout.connect(self._draw_study_progress)

    @property
    def prediction(self) -> Prediction | None:
        """The prediction of the shown image, None when it has none."""
        r = self.session.result(self.session.current)
        return r if isinstance(r, Prediction) else None

    # ----- the shown image
    def analyse(self) -> None:
        """Run MSFM on the shown image in a worker thread (one analysis at a time)."""
        ref, image = self.session.current, self.viewer.image
        if ref is None or image is None or image.source != ref.path or (image.frame or 0) != (ref.frame or 0):
            self.statusBar().showMessage("Nothing to analyse: no image is shown.")
            return
        if self.analysing():
            return
        if self.model_info is None:
            self.findings.reset(ref, f"Cannot analyse: {self.model_line}")
            return
        self.findings.reset(ref, "Analysing…")
        self.controller.analyse_image(self.model, image, ref, self.session.token, self.prefs.device, self.prefs.research_outside_use)

    def preload_model(self) -> None:
        """Pay the engine's one-time costs and load the chosen model in the background
        (``msfm-desktop`` calls it at launch, after building the window without them)."""
        self.controller.preload(self.model if self.model_info is not None else None, self.prefs.device)

    def analysing(self) -> bool:
        return self.controller.image_busy()

    def _on_analysed(self, answer: Analysed) -> None:
        ref, result = answer.ref, answer.result
        if not self.session.accepts(answer.token):
            return  # analysed for a study that is no longer open
        if isinstance(result, Exception):
            self.analysis_error = str(result)
            if ref == self.session.current:
                self.findings.reset(ref, f"Analysis failed: {result}")
            return
        self.run_info = {"device": answer.device} if answer.device else {}
        self.session.store(ref, result)
        self.summary.set_result(ref, result, self.calibration)
        self.summary.show_verdicts(self.session, self.calibration, self.analysing_study())
        if ref == self.session.current:
            self.show_result(ref, result)

    def show_result(self, ref: ImageRef, result: object) -> None:
        """Show a stored result of the shown image: its evidence and its findings."""
        self.overlays.clear()
        self.verdict = None
        if isinstance(result, OutOfScopeResult):
            self.findings.show_outside(ref, result.reason)
        elif isinstance(result, FailedResult):
            self.findings.reset(ref, result.reason)
        elif isinstance(result, Prediction):
            cal = self.calibration
            self.verdict = cal.verdict(result.probability)
            truth = self.session.reference_boxes(ref)
            self.overlays.show(result, self.verdict, cal.map_scale, truth)
            shown = next((k for k in ("evidence", "cam", "a") if self.overlays.visible[k]), "evidence")
            fixed = cal.map_scale is not None and shown in cal.map_scale  # the colour bar says which scale the shown map uses
            self.findings.show_prediction(ref, result, cal, self.run_info.get("device", ""), fixed, truth)

    # ----- the whole study
    def analyse_study(self) -> None:
        """Analysis of every image of the open study, with progress and Cancel; rows
        appear as images finish."""
        paths = self.session.paths()
        if not paths or self.analysing_study():
            if not paths:
                self.statusBar().showMessage("Nothing to analyse: the open study has no images.")
            return
        if self.model_info is None:
            self.summary.reset(f"Cannot analyse: {self.model_line}")
            return
        self.session.run = StudyRun(total=len(paths))
        self.controller.analyse_study(self.model, paths, self.session.token, self.prefs.device, self.prefs.research_outside_use)
        self._study_run = True
        self._set_busy(True)
        self.progress.setRange(0, len(paths))
        self.progress.setFormat(f"%v of {plural(len(paths), 'image')}")
        self.statusBar().showMessage(f"Analysing {plural(len(paths), 'image')}…")
        self.summary.show_verdicts(self.session, self.calibration, running=True)

    def analysing_study(self) -> bool:
        return self.controller.study_busy()

    def _on_study_step(self, token: int, step) -> None:
        if not self.session.accepts(token):
            return
        self._on_study_batch(step.predictions, step.errors, step.out_of_scope)
        self._on_study_progress(step.done, step.total or (self.session.run.total if self.session.run else step.done))

    def _on_study_failed(self, token: int, why: str) -> None:
        from engine.infer import LoadFailure

        if self.session.accepts(token):
            self._on_study_batch([], [LoadFailure(str(self.model), why)], [])

    def _on_study_batch(self, preds, errors, outside) -> None:
        cal = self.calibration
        for p in preds:
            ref = self.session.ref_for(p.file, p.frame)
            if ref is None:
                continue
            self.session.store(ref, p)
            self.summary.set_result(ref, p, cal)
        for o in outside:
            ref = self.session.ref_for(o.file, o.frame)
            if ref is not None:
                self.session.store(ref, OutOfScopeResult(o.reason))
                self.summary.set_result(ref, OutOfScopeResult(o.reason), cal)
        for e in errors:
            self.problems.add_problem(e.path, e.reason)
            ref = self.session.ref_for(e.path)
            if ref is not None:
                self.session.store(ref, FailedResult(e.reason))
                self.summary.set_result(ref, FailedResult(e.reason), cal)
        cur = self.session.current
        if cur is not None and self.viewer.image is not None and self.session.result(cur) is not None and not self.overlays.drawn():
            self.show_result(cur, self.session.result(cur))

    def _on_study_progress(self, done: int, total: int) -> None:
        """Counts the step at once; draws it now if nothing was drawn in the last
        :data:`STUDY_REDRAW_MS`, else when that time is up (the latest count then)."""
        if self.session.run is None:
            return
        self.session.run.done = done
        self._progress_due = (self.session.token, done, total)
        if not self._progress_timer.isActive():
            self._draw_study_progress()

    def _draw_study_progress(self) -> None:
        due, self._progress_due = self._progress_due, None
        if due is None or not self.session.accepts(due[0]) or self.session.run is None or self.session.run.finished:
            return  # nothing new, or another study (or the end of this run) replaced it
        _, done, total = due
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        self.statusBar().showMessage(f"Analysing: {done} of {plural(total, 'image')}")
        self.summary.show_verdicts(self.session, self.calibration, running=True)
        self._progress_timer.start()  # the next step waits for this interval to pass

    def _on_study_done(self, token: int, cancelled: bool) -> None:
        if not self.session.accepts(token):
            return
        self._progress_timer.stop()
        self._progress_due = None  # the final state below replaces any count not yet drawn
        self._set_busy(False)
        run = self.session.run
        if run is not None:
            run.finished, run.cancelled = True, cancelled
        n = len(self.session.predictions())
        self.summary.show_verdicts(self.session, self.calibration)
        self.statusBar().showMessage(f"Study analysis {'cancelled' if cancelled else 'done'}: {plural(n, 'image')} labelled")

    def cancel_all(self) -> None:
        """Stop the scan and the study analysis (each at its next file or batch)."""
        self.cancel_scan()
        self.controller.cancel_study()

    def _stop_analysis(self) -> None:
        """Cancel and join the analyses (the window is closing)."""
        self.controller.stop()
