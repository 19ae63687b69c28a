"""File ▸ Export: the findings of the shown image or of the analysed study as DICOM
(Secondary Capture with the evidence burned in; SR + presentation state), CSV, a PDF report
per study (also as a DICOM Encapsulated PDF in the study), and optionally sent to the
configured PACS — all in a worker thread, with progress and a line per object. What the
PACS did not take waits in the outbox (File ▸ Send queued objects to PACS).

The default folder is the user's export folder, never a source folder: choosing a folder
that holds a source image needs a confirmation. Files are never overwritten (a taken
name gets ``-1``) and an image whose export fails leaves no partial file.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from engine.exports.burn import DEFAULT_LAYERS
from engine.exports.burn import LAYERS as BURN_LAYERS
from engine.exports.export import ExportOptions
from engine.exports.writer import is_inside
from engine.io.dicom import is_dicom
from engine.style import LAYER_LABELS as STYLE_LABELS
from engine.style import MAP_LAYERS

from .export_task import ExportLine, export_run
from .workers import Task, run_task, stop_task

#: What each burnable layer is called in the export dialog: its name, and for the maps that
#: only one is burned in.
BURN_NOTES = {"cam": " (instead of E)", "a": " (instead of E or the CAM)"}
LAYER_LABELS = {k: STYLE_LABELS[k] + BURN_NOTES.get(k, "") for k in (*MAP_LAYERS, *(k for k in BURN_LAYERS if k not in MAP_LAYERS))}


class ExportDialog(QDialog):
    exportFinished = Signal(object)  # the run's summary (msfm_desktop.export_task.export_run)

    """Choose what and where; ``result_summary`` holds the last run's outcome.

    It exports from one open study (:class:`~msfm_desktop.session.OpenStudy`) only, and
    names it: the shown image's patient, study and file, or the study's labelled images
    (with how many of them, and whether the analysis was incomplete). Images outside the
    model's intended use get a CSV row with the reason and no DICOM finding. The
    burned-in layers default to what the viewer shows.
    """

    def __init__(self, prefs, session, calibration=None, layers_shown: tuple[str, ...] | None = None, parent=None) -> None:
        super().__init__(parent)
        from engine.types import Prediction

        self.setWindowTitle("Export findings")
        self.resize(680, 560)
        self.prefs, self.session, self.calibration = prefs, session, calibration
        cur = session.current
        cur_result = session.result(cur)
        self.image_preds = [cur_result] if isinstance(cur_result, Prediction) else []
        self.study_preds = session.predictions()
        self.image_outside = [(cur, cur_result.reason)] if cur is not None and type(cur_result).__name__ == "OutOfScopeResult" else []
        self.study_outside = session.outside_use()
        self.token = session.token
        self.worker: Task | None = None
        self.result_summary: dict | None = None

        n_units = sum(r.frames for r in session.images)
        run = session.run
        incomplete = len(self.study_preds) + len(self.study_outside) < n_units
        state = "; INCOMPLETE analysis" if incomplete else ""
        if run is not None and run.cancelled:
            state += " (cancelled)"
        self.subject = QLabel()
        self.subject.setTextFormat(Qt.TextFormat.PlainText)  # names are data, never markup
        self.subject.setWordWrap(True)
        shown = cur.describe() if cur is not None else "no image shown"
        what = ("labelled" if self.image_preds else "outside the model's intended use: not labelled" if self.image_outside else "not analysed")
        self.subject.setText(f"Shown image: {shown} ({what})\nOpen study: {session.path or 'none'}: "
                             f"{len(self.study_preds)} of {n_units} image(s) labelled{state}")
        self.scope_study = QCheckBox(f"the whole open study ({len(self.study_preds)} labelled image(s) of {n_units}{state}) instead of the shown image")
        self.scope_study.setChecked(bool(self.study_preds) and not self.image_preds)
        self.scope_study.setEnabled(bool(self.study_preds))
        self.folder = QLineEdit(str(prefs.export_dir))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.sc, self.sr, self.csv = QCheckBox("DICOM Secondary Capture (evidence burned in)"), QCheckBox("DICOM SR + presentation state"), QCheckBox("CSV")
        self.report = QCheckBox("PDF report per study (with DICOM: also as an Encapsulated PDF in the study)")
        for b in (self.sc, self.sr, self.csv, self.report):
            b.setChecked(True)
        # PNG/JPEG sources carry no patient: the user may name one, else a marked pseudonym per folder.
        self.raster = [p for p in (*self.image_preds, *self.study_preds) if not is_dicom(p.file)]
        self.patient_id, self.patient_name = QLineEdit(), QLineEdit()
        self.patient_id.setPlaceholderText("blank: a pseudonym MSFM-PSEUDO-… per source folder")
        self.patient_name.setPlaceholderText("Family^Given (DICOM person name), optional")
        for w in (self.patient_id, self.patient_name):
            w.setEnabled(bool(self.raster))
            w.setToolTip("For PNG/JPEG images only; DICOM images keep the patient of their header")
        self.layers = {k: QCheckBox(v) for k, v in LAYER_LABELS.items()}
        want = set(DEFAULT_LAYERS if layers_shown is None else (*layers_shown, "label"))
        # One heat map is burned in, the one the viewer shows first (E, then the CAM, then A).
        maps = [k for k in ("evidence", "cam", "a") if k in want]
        want -= set(maps[1:])
        for k, b in self.layers.items():
            b.setChecked(k in want)
        self.anonymise = QCheckBox("Anonymise (DICOM PS3.15 basic profile)")
        pacs = prefs.pacs()
        self.send = QCheckBox(f"Send to PACS {pacs.describe()}" if pacs else "Send to PACS (configure it in File ▸ Settings)")
        self.send.setEnabled(pacs is not None)
        self.progress = QProgressBar()
        self.log = QListWidget()
        self.export_button, close = QPushButton("Export"), QPushButton("Close")
        self.export_button.clicked.connect(lambda: self.start(confirm=True))
        close.clicked.connect(self.reject)

        form = QFormLayout()
        form.addRow("For", self.subject)
        form.addRow("Export", self.scope_study)
        form.addRow("Folder", row)
        for b in (self.sc, self.sr, self.csv, self.report):
            form.addRow("", b)
        form.addRow("Patient ID (PNG/JPEG)", self.patient_id)
        form.addRow("Patient name (PNG/JPEG)", self.patient_name)
        burn = QVBoxLayout()
        for b in self.layers.values():
            burn.addWidget(b)
        form.addRow("Burn in", burn)
        form.addRow("", self.anonymise)
        form.addRow("", self.send)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(QLabel("Result"))
        lay.addWidget(self.log, 1)
        lay.addLayout(buttons)

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if d:
            self.folder.setText(d)

    def predictions(self) -> list:
        return list(self.study_preds if self.scope_study.isChecked() else self.image_preds)

    def outside(self) -> list:
        """(ImageRef, reason) of the chosen images outside the model's intended use."""
        return list(self.study_outside if self.scope_study.isChecked() else self.image_outside)

    def start(self, confirm: bool = True) -> bool:
        preds = self.predictions()
        if self.worker is not None:
            return False
        if not self.session.accepts(self.token):
            self.log.addItem("Another study was opened: close this dialog and export from the open study.")
            return False
        if not preds and not self.outside():
            self.log.addItem("Nothing to export: analyse the image or the study first.")
            return False
        if not preds:
            self.log.addItem("The chosen images are outside the model's intended use: only the CSV lists them, with the reason.")
        folder = Path(self.folder.text().strip()).expanduser()
        sources = {Path(p.file).parent for p in preds}
        if any(is_inside(folder, s) for s in sources) and confirm:
            answer = QMessageBox.question(self, "Export into a source folder?", f"{folder} holds the source images. Export there anyway?\n(No file is ever overwritten.)")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        layers = tuple(k for k, b in self.layers.items() if b.isChecked())
        pid, pname = self.patient_id.text().strip() or None, self.patient_name.text().strip() or None
        from engine.exports.dicom_objects import patient_problem

        problem = patient_problem(pid, pname)
        if problem:
            self.log.addItem(f"Cannot export: {problem}.")
            return False
        options = ExportOptions(sc=self.sc.isChecked(), sr=self.sr.isChecked(), gsps=self.sr.isChecked(), layers=layers, anonymise=self.anonymise.isChecked(),
                                calibration=self.calibration, patient_id=pid, patient_name=pname)
        self.prefs.export_dir = folder
        self.log.clear()
        self.export_button.setEnabled(False)
        from engine.scope import OutOfScope

        outside = [OutOfScope(file=str(ref.path), frame=ref.frame, reason=reason, meta=self._meta(ref)) for ref, reason in self.outside()]
        self.worker = run_task(export_run, preds, folder, options, options.sc or options.sr, self.csv.isChecked(),
                               self.prefs.pacs() if self.send.isChecked() else None, outside, self.report.isChecked(),
                               yielded=self._on_event, returned=self._on_finished)
        return True

    def _on_event(self, event) -> None:
        if isinstance(event, ExportLine):
            self.log.addItem(event.text)
        else:
            self._on_progress(event.done, event.total)

    def _meta(self, ref) -> dict[str, str]:
        """Patient/study identifiers of an unlabelled image, for its CSV row."""
        entry = next((im for im in (self.session.index.images() if self.session.index else []) if im.path == ref.path), None)
        meta = {"PatientName": ref.patient if ref.patient_key != "raster" else "", "PatientID": ref.patient_id,
                "StudyInstanceUID": "" if ref.study_key.startswith(("folder:", "no-study:")) else ref.study_key}
        if entry is not None and entry.sop_instance_uid:
            meta["SOPInstanceUID"] = entry.sop_instance_uid
        return {k: v for k, v in meta.items() if v}

    def running(self) -> bool:
        return self.worker is not None and self.worker.running()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _on_finished(self, summary: dict) -> None:
        self.result_summary = summary
        self.worker = None
        self.export_button.setEnabled(True)
        n_sent = sum(r.ok for r in summary["sent"])
        n_reports = sum(r.error is None for r in summary["reports"])
        line = f"Done: {len(summary['files'])} DICOM file(s), {n_reports} report(s), {summary['errors']} error(s)"
        if summary["sent"]:
            line += f", {n_sent} of {len(summary['sent'])} sent to PACS"
        if summary["queued"]:
            line += f", {summary['queued']} waiting in the PACS outbox"
        self.log.addItem(line)
        self.exportFinished.emit(summary)

    def done(self, result: int) -> None:  # noqa: D401 (Qt override)
        stop_task(self.worker)
        super().done(result)
