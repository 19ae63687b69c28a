"""Analysis in the main window: the shown image (Ctrl+R, or on open) and the whole study
(Ctrl+Shift+R, batched, with progress and Cancel), both in worker threads.

A mixin of :class:`~msfm_desktop.app.MainWindow`: it uses the window's viewer, overlays,
findings, summary, problems panel, progress bar, ``model`` and ``prefs``.
"""

from __future__ import annotations

from PySide6.QtCore import QThread

from engine.types import Prediction

from .workers import AnalyseWorker, StudyAnalyseWorker, start_in_thread


class AnalysisMixin:
    """Per-image and per-study analysis for the main window (one of each at a time)."""

    def _init_analysis(self) -> None:
        self.prediction: Prediction | None = None
        self.analysis_error: str | None = None
        self.run_info: dict = {}
        self._analyse: tuple[AnalyseWorker, QThread] | None = None
        self._study_run: tuple[StudyAnalyseWorker, QThread] | None = None

    # ----- the shown image
    def analyse(self) -> None:
        """Run MSFM on the shown image in a worker thread (one analysis at a time)."""
        if self.viewer.image is None or self.analysing():
            return
        self.findings.text.setText("Analysing…")
        worker = AnalyseWorker(self.model, self.viewer.image, self.prefs.device)
        worker.finished.connect(self._on_analysed)
        self._analyse = (worker, start_in_thread(worker, self))

    def analysing(self) -> bool:
        return self._analyse is not None and self._analyse[1].isRunning()

    def _on_analysed(self, path, result: object, info: dict) -> None:
        if isinstance(result, Exception):
            self.analysis_error = str(result)
            self.findings.text.setText(f"Analysis failed: {result}")
            return
        if self.viewer.image is None or path != self.viewer.image.source:
            return  # the image changed while the model ran
        self.prediction, self.run_info = result, info
        self.overlays.show(result)
        self.findings.show_prediction(result, info.get("device", ""), info.get("threshold"))

    # ----- the whole study
    def analyse_study(self) -> None:
        """Batched analysis of every image in the browser, with progress and Cancel."""
        paths = self.browser.image_paths()
        if not paths or self.analysing_study():
            return
        if self.model_info is None:
            self.summary.headline.setText(f"Cannot analyse: {self.model_line}")
            return
        self._study_threshold = float(self.model_info["threshold"])
        self.summary.clear()
        worker = StudyAnalyseWorker(self.model, paths, self.prefs.device)
        # Bound methods of UI-thread objects only: PySide6 runs a lambda slot in the
        # emitting (worker) thread, where touching widgets crashes.
        worker.batch.connect(self._on_study_batch)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_study_done)
        self._set_busy(True)
        self.statusBar().showMessage(f"Analysing {len(paths)} image(s)…")
        self._study_run = (worker, start_in_thread(worker, self))

    def analysing_study(self) -> bool:
        return self._study_run is not None and self._study_run[1].isRunning()

    def _on_study_batch(self, preds, errors) -> None:
        self.summary.add(preds, self._study_threshold)
        for e in errors:
            self.problems.add_problem(e.path, e.reason)

    def _on_study_done(self, cancelled: bool) -> None:
        self._set_busy(False)
        n = len(self.summary.predictions)
        self.statusBar().showMessage(f"Study analysis {'cancelled' if cancelled else 'done'}: {n} image(s)")
        if cancelled and n == 0:
            self.summary.headline.setText("Study analysis cancelled.")

    def cancel_all(self) -> None:
        """Stop the scan and the study analysis (each at its next file or batch)."""
        self.cancel_scan()
        if self._study_run is not None:
            self._study_run[0].cancel()

    def _stop_analysis(self) -> None:
        """Cancel and join the analysis threads (the window is closing)."""
        if self._study_run is not None:
            self._study_run[0].cancel()
        for run in (self._analyse, self._study_run):
            if run is not None:
                run[1].quit()
                run[1].wait()
