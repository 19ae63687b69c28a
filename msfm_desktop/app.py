"""``msfm-desktop``: the application entry point and main window.

The window opens a study (command-line path, File ▸ Open, drag and drop, recent folders),
indexes it in a worker thread with a progress bar and cancel, and shows the Patient ▸
Study ▸ Series ▸ Image browser (thumbnails made lazily in a worker), a panel of the files
that could not be used, and the viewer (images decoded in a worker thread). Analysis of
the image or the whole study runs in worker threads (:mod:`.analysis`); its evidence is
drawn over the image (:mod:`.overlays`) and summarised in the Findings and Study summary
panels. Settings persist in QSettings (:mod:`.settings`).
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QProgressBar, QPushButton, QVBoxLayout, QWidget

from engine import __version__
from engine.errors import CheckpointError
from engine.exports.outbox import Outbox
from engine.io.study import StudyIndex
from engine.library.store import ModelStore
from engine.model.described import CheckpointInfo, describe
from engine.resources import DEFAULT_MODEL

from .about import AboutDialog
from .analysis import AnalysisMixin
from .browser import ProblemPanel, StudyBrowser
from .decoder import shared_pool
from .export_dialog import ExportDialog
from .findings import DISCLAIMER, FindingsPanel
from .finetune_panel import FineTunePanel
from .menus import build_menus
from .model_manager import ModelManagerDialog
from .outbox_dialog import OutboxDialog
from .overlays import LAYERS, Overlays
from .session import OpenStudy, plural
from .settings import AppSettings, SettingsDialog
from .studyflow import StudyFlowMixin
from .summary import StudySummary
from .thumbs import ThumbnailLoader
from .viewer import ImageViewer
from .workers import Task, warm_up_engine


def describe_model(path: Path = DEFAULT_MODEL, store: ModelStore | None = None) -> tuple[CheckpointInfo | None, str]:
    """The checkpoint's description (None when unusable) and one line naming it, or why
    there is none. Read once per model choice: it hashes the whole file. An installed
    fine-tuned model whose file no longer has the SHA-256 recorded at install is refused."""
    try:
        d = describe(path)
    except CheckpointError as exc:
        return None, f"no model: {exc}"
    installed = store.find_installed(path) if store is not None else None
    if installed is not None and installed.sha256 != d.sha256:
        return None, f"no model: {path} changed since it was installed (SHA-256 {d.sha256[:12]}, recorded {installed.sha256[:12]}); refused"
    name = installed.name if installed is not None else d.name
    return d, f"{name} ({d.backbone}, {d.input_size} px, sha256 {d.sha256[:12]}) from {path.name}"


class MainWindow(AnalysisMixin, StudyFlowMixin, QMainWindow):
    """The application window. ``model`` overrides the checkpoint chosen in the settings
    (tests use it); ``settings`` is the QSettings store (the user's by default)."""

    def __init__(self, model: Path | None = None, settings: QSettings | None = None, store: ModelStore | None = None,
                 warm_up: bool = True) -> None:
        super().__init__()
        if warm_up:  # before the window shows: no one-time stall once the user works
            warm_up_engine()
        shared_pool().start()  # the decoder process starts while the window builds
        self.prefs = AppSettings(settings)
        self.settings = self.prefs.qs
        self.store = store or ModelStore()
        self._model_override = model
        self.model = model or self.prefs.model
        self.model_info, self.model_line = describe_model(self.model, self.store)
        self.finetune: FineTunePanel | None = None
        self.session = OpenStudy()  # what is open and everything derived from it (studyflow)
        self.study: str | None = None
        self.index: StudyIndex | None = None
        self._scan: Task | None = None
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
        self._loads: list[Task] = []  # image decodes in flight (a quick PgDn run starts several)
        self.overlays = Overlays(self.viewer.view)
        self.viewer.prev_frame.clicked.connect(lambda: self.step_frame(-1))
        self.viewer.next_frame.clicked.connect(lambda: self.step_frame(1))
        self.findings = FindingsPanel()
        self.findings.opacity.valueChanged.connect(lambda v: self.overlays.set_opacity(v / 100))
        self._apply_overlay_defaults()

        self.browser = StudyBrowser()
        self.browser.imageActivated.connect(self.show_image)
        self.browser.setToolTip("Click an image to open it; PgDn/PgUp move through the study")
        self.browser.setMinimumWidth(320)
        self.problems = ProblemPanel()
        self.summary = StudySummary()
        self.summary.rowOpened.connect(self.open_from_table)
        self.thumbs = ThumbnailLoader(self.browser.set_thumbnail, self.problems.add_problem)
        self.browser.thumbnailsWanted.connect(lambda paths: self.thumbs.request(paths, urgent=True))
        self._init_analysis()
        docks = []
        for title, widget, area in (("Study", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea), ("Problems", self.problems, Qt.DockWidgetArea.BottomDockWidgetArea),
                                    ("Findings", self.findings, Qt.DockWidgetArea.LeftDockWidgetArea), ("Study summary", self.summary, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock-{title.lower().replace(' ', '-')}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            docks.append(dock)
        self.resizeDocks([docks[0]], [400], Qt.Orientation.Horizontal)
        self.tabifyDockWidget(docks[1], docks[3])  # Problems and Study summary share the bottom; the summary in front
        docks[3].raise_()
        self.resizeDocks([docks[3]], [230], Qt.Orientation.Vertical)  # the verdicts and several table rows

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the scan or the study analysis (Esc)")
        self.cancel_button.clicked.connect(self.cancel_all)
        self.problem_count = QLabel("0 problems")
        self.problem_count.setToolTip("Files that could not be used, listed with their reasons in the Problems panel")
        self.problems.countChanged.connect(lambda n: self.problem_count.setText(plural(n, "problem")))
        self.statusBar().addPermanentWidget(self.problem_count)
        # Exported objects the PACS did not take survive a restart: say so whenever some wait.
        self.outbox_button = QPushButton("")
        self.outbox_button.setFlat(True)
        self.outbox_button.setToolTip("Exported objects that have not reached the PACS yet: click to see them and send again")
        self.outbox_button.clicked.connect(self.open_outbox)
        self.statusBar().addPermanentWidget(self.outbox_button)
        self.refresh_outbox()
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self._set_busy(False)
        menus = build_menus(self)
        self.recent_menu, self.auto_action, self.layer_actions = menus.recent, menus.auto_analyse, menus.layers
        self.refresh_recent()
        self._refresh_info()
        self.resize(1100, 700)

    # ----- settings, about, recent folders
    def _apply_overlay_defaults(self) -> None:
        for layer in LAYERS:
            self.overlays.set_visible(layer, self.prefs.overlay_visible(layer))
        self.findings.opacity.setValue(self.prefs.opacity)

    def open_settings(self) -> bool:
        """Show the Settings dialog; apply what was accepted. True when accepted."""
        dialog = SettingsDialog(self.prefs, self)
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return False
        self.apply_settings()
        return True

    def apply_settings(self) -> None:
        """Take the stored settings into use: model, overlay defaults, auto-analyse."""
        model = self._model_override or self.prefs.model
        if model != self.model:
            self.model = model
            self.model_info, self.model_line = describe_model(model, self.store)
            # Results belong to the model that made them: another model starts afresh.
            self.cancel_all()
            self.session.results.clear()
            self.session.run = None
            self.overlays.clear()
            self.summary.reset()
            self.findings.reset(self.session.current)
        self._apply_overlay_defaults()
        if self.finetune is not None:
            self.finetune.device = self.prefs.device
        for layer, a in self.layer_actions.items():
            a.setChecked(self.overlays.visible[layer])
        self.auto_action.setChecked(self.prefs.auto_analyse)
        self._refresh_info()

    def activate_model(self, path: str | Path) -> None:
        """Make ``path`` the model used from now on (persisted in the settings)."""
        self._model_override = None
        self.prefs.model = Path(path)
        self.apply_settings()
        self.statusBar().showMessage(f"Active model: {self.model_line}")
        if self.finetune is not None:
            self.finetune.active_model = self.model
            self.finetune.refresh_models()

    def open_finetune(self) -> FineTunePanel:
        """Show the Fine-tune panel (a dock: the rest of the app stays usable)."""
        if self.finetune is None:
            self.finetune = FineTunePanel(self.store, self.prefs.device, self.model)
            self.finetune.modelAccepted.connect(self.activate_model)
            dock = QDockWidget("Fine-tune", self)
            dock.setObjectName("dock-fine-tune")
            dock.setWidget(self.finetune)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            self._finetune_dock = dock
        self._finetune_dock.show()
        self._finetune_dock.raise_()
        return self.finetune

    def open_models(self) -> ModelManagerDialog:
        dialog = ModelManagerDialog(self.store, self.model, self)
        dialog.modelChosen.connect(self.activate_model)
        dialog.show()
        return dialog

    @property
    def calibration(self):
        """The active model's operating points and map scale (:mod:`engine.model.calibration`)."""
        from engine.model.calibration import Calibration

        if self.model_info is not None:
            return self.model_info.calibration
        return Calibration.for_checkpoint({}, 0.5)

    def open_export(self) -> ExportDialog:
        """File ▸ Export: the findings of the shown image or of the open study, never of
        another; the burned-in layers default to what the viewer shows."""
        dialog = ExportDialog(self.prefs, self.session, self.calibration, self.overlays.visible_layers(), self)
        dialog.exportFinished.connect(lambda _summary: self.refresh_outbox())
        self._export_dialog = dialog
        dialog.show()
        return dialog

    def open_outbox(self) -> OutboxDialog:
        """File ▸ Send queued objects to PACS."""
        dialog = OutboxDialog(self.prefs, parent=self)
        dialog.finished.connect(lambda _r: self.refresh_outbox())
        self._outbox_dialog = dialog
        dialog.show()
        return dialog

    def refresh_outbox(self) -> int:
        """Show the PACS outbox button while objects wait; the number waiting."""
        try:
            n = Outbox().count()
        except OSError as exc:
            self.outbox_button.setText("PACS outbox unreadable")
            self.outbox_button.setToolTip(str(exc))
            self.outbox_button.setVisible(True)
            return 0
        self.outbox_button.setText(f"PACS outbox: {n} waiting")
        self.outbox_button.setVisible(n > 0)
        return n

    def open_about(self) -> AboutDialog:
        dialog = AboutDialog(self.model, self.model_info, self)
        dialog.show()
        return dialog

    def recent(self) -> list[str]:
        return self.prefs.recent()

    def refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.recent():
            self.recent_menu.addAction(p, lambda p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.recent()))

    def open_folder_dialog(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open study folder")
        if d:
            self.open_path(d)

    def open_file_dialog(self) -> None:
        # All files first: DICOM files often have no extension at all.
        f, _ = QFileDialog.getOpenFileName(self, "Open image", "", "All files, DICOM without extension too (*);;Radiographs (*.dcm *.png *.jpg *.jpeg DICOMDIR)")
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

    def toggle_overlays(self) -> None:
        on = not any(a.isChecked() for a in self.layer_actions.values())
        for a in self.layer_actions.values():
            a.setChecked(on)

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)  # indeterminate until the first file is counted

    def _refresh_info(self) -> None:
        s = self.session
        if s.state == "ready":
            n = f" ({plural(len(s.images), 'image')})"
        elif s.state in ("empty", "failed"):
            n = f" — nothing to show: {s.message}"
        else:
            n = ""
        self.info.setText(
            f"<b>Study:</b> {html.escape(s.path or 'none opened')}{html.escape(n)} &nbsp; "
            f"<b>Model:</b> {html.escape(self.model_line)} &nbsp; <b style='color:#d08000'>{DISCLAIMER}</b>"
        )

    def closeEvent(self, event) -> None:  # noqa: N802
        self.cancel_scan(wait=True)
        self.thumbs.stop()
        self._stop_analysis()
        if self.finetune is not None:
            self.finetune.shutdown()
        for task in self._loads:
            task.wait()
        super().closeEvent(event)


def build_window(path: str | None = None, model: Path | None = None, settings: QSettings | None = None, store: ModelStore | None = None,
                 warm_up: bool = True) -> MainWindow:
    """The main window, opening ``path``. ``warm_up=False`` leaves the engine's one-time
    costs to :meth:`~msfm_desktop.analysis.AnalysisMixin.preload_model` (the app's launch:
    the window shows first)."""
    win = MainWindow(model, settings, store, warm_up)
    if path:
        win.open_path(path)
    return win
