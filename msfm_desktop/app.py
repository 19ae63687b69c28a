"""``msfm-desktop``: the application entry point and main window.

The window opens a study (command-line path, File ▸ Open, drag and drop, recent folders),
indexes it in a worker thread with a progress bar and cancel, and shows the Patient ▸
Study ▸ Series ▸ Image browser with a panel of the files that could not be used, and the
viewer (images decoded in a worker thread). It names the model it will use (the bundled
default model). Analysis and overlays come with the rest of the desktop issue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QThread
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QProgressBar, QPushButton, QVBoxLayout, QWidget

from engine import __version__
from engine.checkpoint import describe_checkpoint
from engine.errors import CheckpointError
from engine.resources import DEFAULT_MODEL, DEMO_STUDY
from engine.study import StudyIndex

from .browser import ProblemPanel, StudyBrowser
from .findings import FindingsPanel
from .overlays import LAYERS, Overlays
from .summary import StudySummary
from .viewer import ImageViewer
from .workers import AnalyseWorker, LoadWorker, ScanWorker, StudyAnalyseWorker, start_in_thread

LAYER_NAMES = {"cam": "&CAM (abnormal class)", "object": "&Object box", "windows": "&Part windows", "fused": "F&used box"}

MAX_RECENT = 8


def describe_model(path: Path = DEFAULT_MODEL) -> tuple[dict | None, str]:
    """The checkpoint's description (None when unusable) and one line naming it, or why
    there is none. Read once per window: it hashes the whole file."""
    try:
        d = describe_checkpoint(path)
    except CheckpointError as exc:
        return None, f"no model: {exc}"
    return d, f"{d['name']} ({d['backbone']}, {d['input_size']} px, sha256 {d['sha256'][:12]}) from {path.name}"


class MainWindow(QMainWindow):
    def __init__(self, model: Path = DEFAULT_MODEL, settings: QSettings | None = None) -> None:
        super().__init__()
        self.model = model
        self.model_info, self.model_line = describe_model(model)
        self.settings = settings or QSettings("MSFM", "MSFM Desktop")
        self.study: str | None = None
        self.index: StudyIndex | None = None
        self._scan: ScanWorker | None = None
        self._thread: QThread | None = None
        self.setWindowTitle(f"MSFM Desktop {__version__}")
        self.setAcceptDrops(True)

        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setObjectName("session-info")
        self.info.setWordWrap(True)  # a long study path must not widen the window past the screen
        self.viewer = ImageViewer()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.addWidget(self.info)
        lay.addWidget(self.viewer, 1)
        self.setCentralWidget(central)
        self.current: Path | None = None
        self._loads: list[tuple[LoadWorker, QThread]] = []
        self.overlays = Overlays(self.viewer.view)
        self.prediction = None
        self._analyse: tuple[AnalyseWorker, QThread] | None = None
        self.findings = FindingsPanel()
        self.findings.opacity.valueChanged.connect(lambda v: self.overlays.set_opacity(v / 100))

        self.browser = StudyBrowser()
        self.browser.imageActivated.connect(self.show_image)
        self.browser.setMinimumWidth(320)
        self.problems = ProblemPanel()
        self.summary = StudySummary()
        self._study_run: tuple[StudyAnalyseWorker, QThread] | None = None
        docks = []
        for title, widget, area in (("Study", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea), ("Problems", self.problems, Qt.DockWidgetArea.BottomDockWidgetArea),
                                    ("Findings", self.findings, Qt.DockWidgetArea.LeftDockWidgetArea), ("Study summary", self.summary, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            docks.append(dock)
        self.resizeDocks([docks[0]], [400], Qt.Orientation.Horizontal)
        self.resizeDocks([docks[1]], [120], Qt.Orientation.Vertical)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_all)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self._set_busy(False)
        self._build_menu()
        self._refresh_info()
        self.resize(1100, 700)

    # ----- menu and recent folders
    def _build_menu(self) -> None:
        m = self.menuBar().addMenu("&File")
        act = QAction("&Open folder…", self)
        act.setShortcut(QKeySequence.StandardKey.Open)
        act.triggered.connect(self._open_folder_dialog)
        m.addAction(act)
        act = QAction("Open &file…", self)
        act.triggered.connect(self._open_file_dialog)
        m.addAction(act)
        self.recent_menu = m.addMenu("Open &recent")
        self._refresh_recent()
        m.addSeparator()
        v = self.menuBar().addMenu("&View")
        for text, key, slot in (
            ("&Next image", Qt.Key.Key_PageDown, lambda: self.step_image(1)),
            ("&Previous image", Qt.Key.Key_PageUp, lambda: self.step_image(-1)),
            ("&Fit", Qt.Key.Key_F, lambda: self.viewer.fit()),
            ("&1:1", Qt.Key.Key_1, lambda: self.viewer.one_to_one()),
            ("&Invert", Qt.Key.Key_I, lambda: self.viewer.set_inverted(not self.viewer.inverted)),
        ):
            a = QAction(text, self)
            a.setShortcut(QKeySequence(key))
            a.triggered.connect(slot)
            v.addAction(a)
        v.addSeparator()
        a = QAction("&Analyse", self)
        a.setShortcut(QKeySequence("Ctrl+R"))
        a.triggered.connect(self.analyse)
        v.addAction(a)
        a = QAction("Analyse &study", self)
        a.setShortcut(QKeySequence("Ctrl+Shift+R"))
        a.triggered.connect(self.analyse_study)
        v.addAction(a)
        self.auto_action = QAction("Analyse &automatically on open", self)
        self.auto_action.setCheckable(True)
        self.auto_action.setChecked(self.auto_analyse())
        self.auto_action.toggled.connect(lambda on: self.settings.setValue("auto_analyse", bool(on)))
        v.addAction(self.auto_action)
        self.layer_actions: dict[str, QAction] = {}
        for layer in LAYERS:
            a = QAction(LAYER_NAMES[layer], self)
            a.setCheckable(True)
            a.setChecked(True)
            a.toggled.connect(lambda on, layer=layer: self.overlays.set_visible(layer, on))
            v.addAction(a)
            self.layer_actions[layer] = a
        a = QAction("Toggle all &overlays", self)
        a.setShortcut(QKeySequence(Qt.Key.Key_O))
        a.triggered.connect(self.toggle_overlays)
        v.addAction(a)
        act = QAction("&Quit", self)
        act.setShortcut(QKeySequence.StandardKey.Quit)
        act.triggered.connect(self.close)
        m.addAction(act)

    def recent(self) -> list[str]:
        v = self.settings.value("recent", [])
        return [v] if isinstance(v, str) else list(v or [])

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.recent():
            self.recent_menu.addAction(p, lambda p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.recent()))

    def _open_folder_dialog(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open study folder")
        if d:
            self.open_path(d)

    def _open_file_dialog(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Radiographs (*.dcm *.png *.jpg *.jpeg DICOMDIR);;All files (*)")
        if f:
            self.open_path(f)

    # ----- drag and drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_path(paths[0])

    # ----- scanning
    def open_path(self, path: str | Path) -> None:
        """Index ``path`` in a worker thread; the browser fills when it finishes."""
        self.cancel_scan(wait=True)
        self.study = str(path)
        self.browser.clear()
        self.problems.clear()
        self._refresh_info()
        if Path(path).exists():
            recent = [str(path)] + [p for p in self.recent() if p != str(path)]
            self.settings.setValue("recent", recent[:MAX_RECENT])
            self._refresh_recent()
        self._scan = ScanWorker([path])
        self._scan.progress.connect(self._on_progress)
        self._scan.finished.connect(self._on_scanned)
        self._set_busy(True)
        self.statusBar().showMessage(f"Scanning {path}…")
        self._thread = start_in_thread(self._scan, self)

    def cancel_scan(self, wait: bool = False) -> None:
        if self._scan is not None:
            self._scan.cancel()
        if wait and self._thread is not None:
            self._thread.quit()
            self._thread.wait()

    def scanning(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def _on_progress(self, done: int, total: int, _path: str) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)

    def _on_scanned(self, index: StudyIndex) -> None:
        self.index = index
        self.browser.set_index(index)
        for p in index.problems:
            self.problems.add_problem(p.path, p.reason)
        n = len(index.images())
        state = "cancelled" if index.cancelled else "done"
        self.statusBar().showMessage(f"{self.study}: {n} image(s), {len(index.problems)} problem(s) ({state})")
        self._scan = None
        self._set_busy(False)
        self._refresh_info()
        paths = self.browser.image_paths()
        if paths:
            self.show_image(paths[0])

    # ----- images
    def show_image(self, path: str | Path) -> None:
        """Decode ``path`` in a worker thread and show it; failures go to the problems panel."""
        worker = LoadWorker(path)
        worker.finished.connect(self._on_loaded)
        self._loads.append((worker, start_in_thread(worker, self)))
        self.current = Path(path)

    def loading(self) -> bool:
        return any(t.isRunning() for _, t in self._loads)

    def step_image(self, step: int) -> None:
        paths = self.browser.image_paths()
        if not paths:
            return
        i = paths.index(self.current) if self.current in paths else -1
        self.show_image(paths[(i + step) % len(paths)])

    def _on_loaded(self, path: Path, result: object) -> None:
        self._loads = [(w, t) for w, t in self._loads if t.isRunning()]
        if path != self.current:
            return  # the user moved on while this one decoded
        if isinstance(result, Exception):
            self.problems.add_problem(path, getattr(result, "reason", str(result)))
            self.statusBar().showMessage(f"{path.name}: {getattr(result, 'reason', result)}")
            return
        self.viewer.set_image(result)
        self.overlays.clear()
        self.prediction = None
        self.findings.reset()
        if self.auto_analyse():
            self.analyse()

    # ----- analysis
    def auto_analyse(self) -> bool:
        return str(self.settings.value("auto_analyse", False)).lower() == "true"

    def analyse(self) -> None:
        """Run MSFM on the shown image in a worker thread (one analysis at a time)."""
        if self.viewer.image is None or self.analysing():
            return
        self.findings.text.setText("Analysing…")
        worker = AnalyseWorker(self.model, self.viewer.image, str(self.settings.value("device", "auto")))
        worker.finished.connect(self._on_analysed)
        self._analyse = (worker, start_in_thread(worker, self))

    def analyse_study(self) -> None:
        """Batched analysis of every image in the browser, with progress and Cancel."""
        paths = self.browser.image_paths()
        if not paths or self.analysing_study():
            return
        if self.model_info is None:
            self.summary.headline.setText(f"Cannot analyse: {self.model_line}")
            return
        threshold = self.model_info["threshold"]
        self.summary.clear()
        worker = StudyAnalyseWorker(self.model, paths, str(self.settings.value("device", "auto")))
        worker.batch.connect(lambda preds, errors: self._on_study_batch(preds, errors, threshold))
        worker.progress.connect(lambda done, total: self._on_progress(done, total, ""))
        worker.finished.connect(self._on_study_done)
        self._set_busy(True)
        self.statusBar().showMessage(f"Analysing {len(paths)} image(s)…")
        self._study_run = (worker, start_in_thread(worker, self))

    def analysing_study(self) -> bool:
        return self._study_run is not None and self._study_run[1].isRunning()

    def _on_study_batch(self, preds, errors, threshold: float) -> None:
        self.summary.add(preds, threshold)
        for e in errors:
            self.problems.add_problem(e.path, e.reason)

    def _on_study_done(self, cancelled: bool) -> None:
        self._set_busy(False)
        n = len(self.summary.predictions)
        self.statusBar().showMessage(f"Study analysis {'cancelled' if cancelled else 'done'}: {n} image(s)")
        if cancelled and n == 0:
            self.summary.headline.setText("Study analysis cancelled.")

    def cancel_all(self) -> None:
        self.cancel_scan()
        if self._study_run is not None:
            self._study_run[0].cancel()

    def analysing(self) -> bool:
        return self._analyse is not None and self._analyse[1].isRunning()

    def toggle_overlays(self) -> None:
        on = not any(a.isChecked() for a in self.layer_actions.values())
        for a in self.layer_actions.values():
            a.setChecked(on)

    def _on_analysed(self, path, result: object) -> None:
        if isinstance(result, Exception):
            self.findings.text.setText(f"Analysis failed: {result}")
            return
        if self.viewer.image is None or path != self.viewer.image.source:
            return  # the image changed while the model ran
        p = result
        self.prediction = p
        self.overlays.show(p)
        self.findings.show_prediction(p)

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)  # indeterminate until the first file is counted

    def _refresh_info(self) -> None:
        n = f" ({len(self.index.images())} images)" if self.index is not None else ""
        self.info.setText(
            f"<b>Study:</b> {self.study or 'none opened'}{n} &nbsp; "
            f"<b>Model:</b> {self.model_line}"
        )

    def closeEvent(self, event) -> None:  # noqa: N802
        self.cancel_scan(wait=True)
        if self._study_run is not None:
            self._study_run[0].cancel()
        for _, t in self._loads + [r for r in (self._analyse, self._study_run) if r]:
            t.quit()
            t.wait()
        super().closeEvent(event)


def build_window(path: str | None = None, model: Path = DEFAULT_MODEL, settings: QSettings | None = None) -> MainWindow:
    win = MainWindow(model, settings)
    if path:
        win.open_path(path)
    return win


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msfm-desktop", description="MSFM Desktop")
    parser.add_argument("path", nargs="?", help="study folder, image file or DICOMDIR to open")
    parser.add_argument("--version", action="version", version=f"msfm-desktop {__version__}")
    args = parser.parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    path = args.path or (str(DEMO_STUDY) if DEMO_STUDY.is_dir() else None)
    win = build_window(path)
    win.show()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
