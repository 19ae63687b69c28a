"""``msfm predict``: analyse images and write JSON, CSV, DICOM objects, PDF reports and overlays
(SPEC §5, §7)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import MSFMError
from ..resources import resolve_checkpoint
from .util import _fail, _write_atomic_text


def _anonymised_json(doc: dict) -> dict:
    """``--anonymise`` for the JSON as for the CSV: paths (file names can carry names)
    become ``image-0001``... in the CSV's order (predictions, then images not analysed) and
    ``skipped-0001``...; source SOP Instance UIDs are left out."""
    rows = doc["predictions"] + doc["out_of_scope"]
    for i, row in enumerate(rows, 1):
        row["file"] = f"image-{i:04d}"
        row.pop("sop_instance_uid", None)
    for i, e in enumerate(doc["errors"], 1):
        e["path"] = f"skipped-{i:04d}"
    return doc


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..exports.dicom_objects import patient_problem
    from ..infer import Predictor
    from ..io.scan import iter_image_files
    from ..scope import describe, describe_research

    problem = patient_problem(args.patient_id, args.patient_name)
    if problem:
        return _fail(f"--patient-id/--patient-name: {problem}")
    research = args.research_outside_intended_use
    try:
        predictor = Predictor.from_checkpoint(resolve_checkpoint(args.checkpoint), args.device, args.batch_size, enforce_scope=not research)
    except (MSFMError, RuntimeError) as exc:
        return _fail(str(exc))
    files = list(iter_image_files(args.paths))
    if not files:
        return _fail("no PNG, JPEG or DICOM files found in the given paths")
    preds, errors, refused = [], [], []
    with tqdm(total=len(files), unit="file", desc="predict", disable=args.quiet, file=sys.stderr) as bar:
        for step in predictor.iter_predict(files):
            preds.extend(step.predictions)
            for e in step.errors:
                errors.append({"path": e.path, "reason": e.reason})
                tqdm.write(f"skipped {e.path}: {e.reason}", file=sys.stderr)
            for o in step.out_of_scope:
                refused.append(o)
                tqdm.write(f"not analysed {o.file}{'' if o.frame is None else f' frame {o.frame}'}: {o.message}", file=sys.stderr)
            for p in step.predictions:
                if p.outside_intended_use is not None:
                    tqdm.write(f"{p.file}{'' if p.frame is None else f' frame {p.frame}'}: {describe_research(p.outside_intended_use)}", file=sys.stderr)
            bar.n = step.done
            bar.refresh()
    marked = sum(p.outside_intended_use is not None for p in preds)
    if args.json:
        doc = {"predictions": [p.to_json() for p in preds], "errors": errors, "out_of_scope": [o.to_json() for o in refused]}
        if args.anonymise:
            doc = _anonymised_json(doc)
        _write_atomic_text(Path(args.json), json.dumps(doc, indent=1))
    calibration = predictor.calibration  # the SC and overlays draw what the desktop viewer shows
    if args.csv:
        from ..exports.csvout import companion_path, write_csv

        taken = [str(f) for f in (Path(args.csv), companion_path(args.csv)) if f.exists()]
        if taken:  # checked before any DICOM is written, so nothing is half done
            return _fail(f"{', '.join(taken)} exists; exports never overwrite a file, choose another name")
    # DICOM first: the CSV rows then carry the UIDs of the objects written for them.
    failed, exported = _export_dicom(args, preds, calibration)
    if args.csv:
        try:
            write_csv(preds, args.csv, anonymise=args.anonymise, out_of_scope=refused, exported=exported)
        except FileExistsError:
            return _fail(f"{args.csv} exists; exports never overwrite a file, choose another name")
    if args.report:
        failed += _write_reports(args, preds, refused, exported, calibration)
    if args.overlays:
        from ..exports.burn import save_overlay

        out = Path(args.overlays)
        for p in preds:
            save_overlay(p, out, calibration=calibration)
    if not args.json and not args.csv and not args.dicom_sc and not args.dicom_sr and not args.report:
        for p in preds:
            print(json.dumps(p.to_json()))
        for o in refused:
            print(json.dumps({**o.to_json(), "out_of_scope": describe(o.reason)}))
    summary = f"{len(preds)} image(s) predicted"
    if marked:
        summary += f" ({marked} outside the model's intended use, for research use only)"
    summary += f", {len(refused)} outside the model's intended use (not analysed), {len(errors)} skipped"
    print(summary, file=sys.stderr)
    # Refusing an out-of-scope image is a result, not a failure: exit 1 only when
    # nothing could be read or an export failed.
    return 0 if (preds or refused) and not failed else 1


def _write_reports(args: argparse.Namespace, preds, refused, exported, calibration=None) -> int:
    """``--report DIR``: one PDF per study, and its Encapsulated PDF beside the study's SR
    (or SC) when DICOM was exported; returns the number of studies that failed."""
    from ..exports.report import write_reports

    failed = 0
    for r in write_reports(preds, args.report, exported, refused, calibration=calibration, anonymise=args.anonymise,
                           dicom=bool(args.dicom_sc or args.dicom_sr), patient_id=args.patient_id, patient_name=args.patient_name):
        if r.error:
            failed += 1
            print(f"report failed for study {r.study}: {r.error}", file=sys.stderr)
        elif not args.quiet:
            print(f"report of study {r.study}: {r.pdf} ({r.pages} page(s))" + (f", {r.dicom}" if r.dicom else ""), file=sys.stderr)
    return failed


def _export_dicom(args: argparse.Namespace, preds, calibration=None) -> tuple[int, list]:
    """``--dicom-sc DIR`` / ``--dicom-sr DIR`` (SR and its presentation state); returns
    the number of images whose export failed (each reported on stderr) and the results."""
    from ..exports.export import ExportOptions, export_dicom

    if not (args.dicom_sc or args.dicom_sr):
        return 0, []
    # One export run for both folders: one set of UIDs and pseudonyms (a PNG is wrapped once).
    folders = {"sc": Path(args.dicom_sc or args.dicom_sr), "sr": Path(args.dicom_sr or args.dicom_sc), "gsps": Path(args.dicom_sr or args.dicom_sc)}
    options = ExportOptions(sc=bool(args.dicom_sc), sr=bool(args.dicom_sr), gsps=bool(args.dicom_sr), anonymise=args.anonymise,
                            calibration=calibration, folders=folders, patient_id=args.patient_id, patient_name=args.patient_name)
    failed = 0
    results = export_dicom(preds, folders["sc"], options)
    for r in results:
        if r.error:
            failed += 1
            print(f"export failed for {r.source}: {r.error}", file=sys.stderr)
        elif not args.quiet:
            print(f"exported {r.source}: {', '.join(str(f) for f in r.files.values())}", file=sys.stderr)
    return failed, results
