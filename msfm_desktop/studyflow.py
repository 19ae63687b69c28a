"""Opening a study and moving through its images, for the main window.

The window holds one :class:`~msfm_desktop.session.OpenStudy`. :meth:`open_path` makes a
new one and clears every panel that showed the old one *before* anything else happens,
so nothing of the previous patient survives on screen, in Ctrl+R or in an export. A
failed or empty open leaves the screen empty and says why. Images are opened by a single
click or keyboard move in the tree, PgDn/PgUp (the tree follows), a row of the study
table (with its cached result), and frames of a multi-frame file by Ctrl+Right/Left.

A mixin of :class:`~msfm_desktop.app.MainWindow` (its viewer, browser, panels, workers).
"""

from __future__ import annotations

from pathlib import Path

from engine.io.study import ScanProblem, ScanProgress, StudyIndex, scan_study

from .session import FailedResult, ImageRef, OpenStudy, plural
from .workers import run_task, stop_task

MAX_RECENT = 8


def decode_for_view(path: Path, frame: int | None):
    """The task body of showing an image (worker thread): one decode in the decoder
    process gives the display pixels (DICOM without its VOI LUT, so the viewer can offer
    every header window) and the model's input beside them, so *Analyse* does not decode
    the file again."""
    from .decoder import shared_pool

    return shared_pool().load_image(path, frame or 0, apply_voi=False, model_input=True)


class StudyFlowMixin:
    """Session replacement, scanning, image and frame navigation."""

    session: OpenStudy

    # ----- opening
    def open_path(self, path: str | Path) -> None:
        """Replace the open study by ``path`` (indexed in a worker thread)."""
        self.cancel_scan(wait=True)
        self.cancel_all()  # a running study analysis belongs to the old session
        self.session = OpenStudy.opening(path)
        self._clear_derived(f"Opening {path}…")
        self.study = str(path)
        if Path(path).exists():
            recent = [str(path)] + [p for p in self.recent() if p != str(path)]
            self.prefs.set_recent(recent[:MAX_RECENT])
            self.refresh_recent()
        token = self.session.token
        self._set_busy(True)
        self.statusBar().showMessage(f"Scanning {path}…")
        self._scan = run_task(scan_study, [path], yielded=self._on_progress, returned=lambda index: self._on_scanned(token, index),
                              errored=lambda exc: self._on_scanned(token, StudyIndex(problems=[ScanProblem(Path(path), f"scan failed: {type(exc).__name__}: {exc}")])))

    def _clear_derived(self, message: str = "") -> None:
        """Every panel back to 'nothing shown', at once."""
        dialog = getattr(self, "_export_dialog", None)
        if dialog is not None and dialog.isVisible():
            dialog.done(0)  # it was opened for the previous study: it must not export it now
        self.index = None
        self.browser.clear()
        self.problems.clear()
        self.thumbs.reset()
        self.overlays.clear()
        self.viewer.clear(message)
        self.findings.reset(None, message or "No image shown.")
        self.summary.reset()
        self._refresh_info()

    def cancel_scan(self, wait: bool = False) -> None:
        """Stop the scan at its next file (it returns what it found, marked cancelled)."""
        stop_task(self._scan, wait)

    def scanning(self) -> bool:
        return self._scan is not None and self._scan.running()

    def _on_progress(self, p: ScanProgress) -> None:
        if p.total:  # 0 while the files are still being found: the bar stays indeterminate
            self.progress.setMaximum(p.total)
            self.progress.setValue(p.done)

    def _on_scanned(self, token: int, index: StudyIndex) -> None:
        if not self.session.accepts(token):
            return  # a scan of a study the user has since replaced
        self._scan = None
        self._set_busy(False)
        self.session.set_index(index)
        self.index = index
        self.browser.set_index(index)
        for p in index.problems:
            self.problems.add_problem(p.path, p.reason)
        self._refresh_info()
        n = len(self.session.images)
        state = " (scan cancelled)" if index.cancelled else ""
        if not n:
            why = f"Nothing to show from {self.session.path}: {self.session.message}."
            self.viewer.clear(why)
            self.findings.reset(None, why)
            self.statusBar().showMessage(why)
            return
        self.statusBar().showMessage(f"{self.session.path}: {plural(n, 'image')}{state}")
        paths = self.browser.image_paths()
        self.thumbs.request(paths)  # the rest of the study, behind the rows on screen
        self.show_image(paths[0])

    # ----- images and frames
    def show_image(self, path: str | Path, frame: int | None = None) -> None:
        """Show image ``path`` (frame ``frame``) of the open study: everything about the
        previous image goes at once; it decodes in a worker; a cached result comes back
        with it."""
        ref = self.session.ref_for(path, frame)
        if ref is None:
            if self.session.state != "scanning":
                self.open_path(path)  # not part of the open study: showing it means opening it, replacing the study
            return
        if self.session.current == ref and self.viewer.image is not None:
            return
        self.session.current = ref
        self.overlays.clear()
        self.viewer.clear(f"Loading {ref.image_name}…")
        self.viewer.set_frame(ref.frame, ref.frames)
        self.findings.reset(ref, "Loading…")
        self.browser.select_path(ref.path)
        token = self.session.token
        self._loads = [t for t in self._loads if t.running()]
        self._loads.append(run_task(decode_for_view, ref.path, ref.frame, returned=lambda image: self._on_loaded(token, ref.path, ref.frame, image),
                                    errored=lambda exc: self._on_loaded(token, ref.path, ref.frame, exc)))

    @property
    def current(self) -> Path | None:
        return self.session.current.path if self.session.current is not None else None

    def loading(self) -> bool:
        return any(t.running() for t in self._loads)

    def step_image(self, step: int) -> None:
        paths = self.browser.image_paths()
        if not paths:
            return
        i = paths.index(self.current) if self.current in paths else -1
        self.show_image(paths[(i + step) % len(paths)])

    def step_frame(self, step: int) -> None:
        ref = self.session.current
        if ref is None or ref.frames <= 1:
            self.statusBar().showMessage("The shown image has a single frame.")
            return
        self.show_image(ref.path, ((ref.frame or 0) + step) % ref.frames)

    def _on_loaded(self, token: int, path: Path, frame: int | None, result: object) -> None:
        ref = self.session.current
        if not self.session.accepts(token) or ref is None or ref.path != path or ref.frame != frame:
            return  # the user moved on while this one decoded
        if isinstance(result, Exception):
            reason = getattr(result, "reason", f"{type(result).__name__}: {result}")
            self.problems.add_problem(path, reason)
            self.session.store(ref, FailedResult(f"cannot be decoded: {reason}"))
            self.viewer.clear(f"{ref.image_name} cannot be shown:\n{reason}")
            self.findings.reset(ref, f"This image cannot be shown or analysed: {reason}")
            self.statusBar().showMessage(f"{path.name}: {reason}")
            return
        self.viewer.set_image(result)
        self.viewer.set_frame(ref.frame, ref.frames)
        cached = self.session.result(ref)
        if cached is not None and not isinstance(cached, FailedResult):
            self.show_result(ref, cached)
        else:
            self.findings.reset(ref)
            if self.prefs.auto_analyse:
                self.analyse()

    def open_from_table(self, path: str, frame: int | None) -> None:
        """A study-table row: its image, with its cached result."""
        self.show_image(path, frame)

    def current_ref(self) -> ImageRef | None:
        return self.session.current
