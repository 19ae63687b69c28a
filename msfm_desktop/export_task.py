"""The export task: everything the Export dialog asked for, in one worker-thread run.

DICOM objects (Secondary Capture, SR, GSPS; :func:`engine.exports.export.iter_export`),
the CSV, the per-study PDF reports, then the PACS send of everything written
(:func:`engine.exports.outbox.iter_send_and_queue`, what fails waits in the outbox). Qt-free:
it yields :class:`ExportLine` s for the dialog's log and :class:`engine.tasks.Progress`,
and returns the run's summary (:func:`export_run`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Cancelled
from engine.exports.csvout import write_csv
from engine.exports.export import ExportOptions, iter_export
from engine.exports.outbox import Outbox, iter_send_and_queue
from engine.exports.pacs import PacsConfig
from engine.tasks import Progress, relay


@dataclass(frozen=True)
class ExportLine:
    """One line for the export log ("✔ …" / "✘ …")."""

    text: str


def export_run(preds, folder: Path, options: ExportOptions, dicom: bool, csv: bool, pacs: PacsConfig | None,
               outside=(), report: bool = False) -> Generator[ExportLine | Progress, None, dict]:
    """The export task (worker thread): DICOM (when ``dicom``), CSV, the PDF reports, then
    the PACS send of everything written; ``options`` carries layers, calibration,
    anonymisation and patient; ``outside`` are :class:`engine.scope.OutOfScope` rows for the
    CSV and the report. Yields log lines and progress; returns the run's summary
    ``{"files": [...], "errors": n, "sent": [SendResult], "reports": [ReportResult], "queued": n,
    "cancelled": bool}``. A cancel stops before the next step or object."""
    from engine.exports.report import write_reports  # here: it loads highdicom and ReportLab (the app's start need neither)

    folder, preds, outside = Path(folder), list(preds), list(outside)
    files: list[Path] = []
    sent: list = []
    exported: list = []
    reports: list = []
    errors, queued, cancelled = 0, 0, False
    anonymise = options.anonymise
    try:
        if dicom and preds:
            steps = iter_export(preds, folder, options)
            exported, cancelled = yield from relay(steps, lambda step: (Progress(step.done, step.total), _export_line(step.result)))
            for r in exported:
                if r.error:
                    errors += 1
                else:
                    files += list(r.files.values())
        if csv and not cancelled:
            name = f"msfm-findings-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.csv"
            try:
                yield ExportLine(f"✔ CSV: {write_csv(preds, folder / name, anonymise, outside, exported).name}")
            except OSError as exc:
                errors += 1
                yield ExportLine(f"✘ CSV: {exc}")
        if report and not cancelled:
            reports = write_reports(preds, folder, exported, outside, calibration=options.calibration, layers=options.layers,
                                    anonymise=anonymise, dicom=dicom, patient_id=options.patient_id, patient_name=options.patient_name)
            for rep in reports:
                if rep.error:
                    errors += 1
                    yield ExportLine(f"✘ report of study {rep.study}: {rep.error}")
                else:
                    files += [rep.dicom] if rep.dicom is not None else []
                    yield ExportLine(f"✔ report ({rep.pages} page(s)): {rep.pdf.name}" + (f", {rep.dicom.name}" if rep.dicom else ""))
        if pacs is not None and files and not cancelled:
            yield ExportLine(f"Sending {len(files)} object(s) to {pacs.describe()}…")
            outbox = Outbox()
            sent, cancelled = yield from relay(iter_send_and_queue(files, pacs, outbox), lambda s: (Progress(s.done, s.total), _send_line(s.result)))
            queued = outbox.count()
            if queued:
                yield ExportLine(f"{queued} object(s) wait in the PACS outbox: File ▸ Send queued objects to PACS tries them again")
    except Cancelled:
        cancelled = True
    except Exception as exc:  # report, never take the app down
        errors += 1
        yield ExportLine(f"✘ export stopped: {type(exc).__name__}: {exc}")
    return {"files": files, "errors": errors, "sent": sent, "reports": reports, "queued": queued, "cancelled": cancelled}


def _export_line(r) -> ExportLine:
    if r.error:
        return ExportLine(f"✘ {Path(r.source).name}: {r.error}")
    return ExportLine(f"✔ {Path(r.source).name}: " + ", ".join(p.name for p in r.files.values()))


def _send_line(r) -> ExportLine:
    tries = f" (try {r.attempts})" if r.attempts > 1 else ""
    return ExportLine(f"{'✔' if r.ok else '✘'} PACS {r.path.name}: {r.message}{tries}")
