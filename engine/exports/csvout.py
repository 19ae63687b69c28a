"""CSV export (SPEC §7): one row per image with the source, SOP Instance UID, probability,
label, stage probabilities, object and fused box (original pixels), model hash and time.

Beside ``NAME.csv`` a companion ``NAME.columns.json`` states what the columns mean: units,
the box convention (xyxy in pixels of the source image, 0-based, origin at the top-left
corner of the top-left pixel), 1-based frame numbers as DICOM counts them, and the
threshold each label was made at (also the ``threshold`` column). When the same run wrote
DICOM objects, ``export_study_instance_uid`` and ``sr_sop_instance_uid`` join a row to them.

Images outside the model's intended use (:mod:`engine.scope`) get a row too, with the
label, probabilities and boxes empty and the reason in ``intended_use``; a prediction made
anyway under the research override carries its mark there. The columns after ``time``
were added later and stay at the end, so readers that index the first columns still work.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Sequence
from pathlib import Path

from ..layers import ShapeLayer
from ..scope import OutOfScope, describe, describe_research
from ..types import Prediction
from .writer import write_new_file

CSV_FIELDS = [
    "file", "frame", "sop_instance_uid", "width", "height", "probability", "label",
    "p_main", "p_object", "p_parts", "object_x0", "object_y0", "object_x1", "object_y1",
    "fused_x0", "fused_y0", "fused_x1", "fused_y1", "model_sha256", "time",
    "patient_id", "study_instance_uid", "intended_use",
    "lesion_x0", "lesion_y0", "lesion_x1", "lesion_y1", "peak_x", "peak_y",
    "threshold", "export_study_instance_uid", "sr_sop_instance_uid",
]
_BOX = "pixels of the source image, xyxy, 0-based, origin at the top-left corner of the top-left pixel, x right, y down"
#: What each column means (the companion file).
COLUMNS: dict[str, str] = {
    "file": "source file (image-NNNN when anonymised)",
    "frame": "frame number, 1-based as DICOM's ReferencedFrameNumber; empty for a single-frame image",
    "sop_instance_uid": "SOP Instance UID of the source (DICOM only; empty when anonymised)",
    "width": "source width, pixels", "height": "source height, pixels",
    "probability": "p(abnormal) of the MSFM ensemble, 0-1",
    "label": "1 abnormal, 0 normal: probability >= threshold",
    "p_main": "p(abnormal) of the main stage, 0-1", "p_object": "p(abnormal) of the object stage, 0-1",
    "p_parts": "p(abnormal) of the part stage, 0-1",
    **{f"object_{c}": f"look-closer crop box, {_BOX}" for c in ("x0", "y0", "x1", "y1")},
    **{f"fused_{c}": f"region box (eq. 11 fused box), {_BOX}" for c in ("x0", "y0", "x1", "y1")},
    "model_sha256": "SHA-256 of the model file", "time": "when the CSV was written (ISO 8601, local time with offset)",
    "patient_id": "PatientID of the source (DICOM only; empty when anonymised)",
    "study_instance_uid": "StudyInstanceUID of the source (DICOM only; empty when anonymised)",
    "intended_use": "empty, or why the image was not analysed / the research-use mark",
    **{f"lesion_{c}": f"lesion box (the finding), {_BOX}" for c in ("x0", "y0", "x1", "y1")},
    "peak_x": f"evidence peak, {_BOX}", "peak_y": f"evidence peak, {_BOX}",
    "threshold": "decision threshold on p(abnormal) the label was made at",
    "export_study_instance_uid": "StudyInstanceUID of the DICOM objects this run wrote for the row (pseudonymised when anonymised)",
    "sr_sop_instance_uid": "SOP Instance UID of the SR this run wrote for the row",
}
#: Columns that identify the patient or the source, blanked (or replaced) by ``anonymise``.
IDENTIFYING = ("sop_instance_uid", "patient_id", "study_instance_uid")


def _frame(frame: int | None):
    return "" if frame is None else frame + 1  # DICOM counts frames from 1


def csv_row(p: Prediction, when: str, exported=None) -> dict:
    """The row of one prediction; ``intended_use`` is empty unless it was made under the
    research override, where it holds the out-of-scope mark. ``exported``: the
    :class:`~.export.ExportResult` of its DICOM objects from the same run, if any. The box
    and point columns come from the prediction's evidence layers (:func:`layer_columns`);
    a column a prediction has no layer for is left empty by the writer."""
    return {
        "file": p.file, "frame": _frame(p.frame), "sop_instance_uid": p.meta.get("SOPInstanceUID", ""),
        "width": p.width, "height": p.height, "probability": f"{p.probability:.6f}", "label": p.label,
        "p_main": f"{p.stages['main']:.6f}", "p_object": f"{p.stages['object']:.6f}", "p_parts": f"{p.stages['parts']:.6f}",
        "model_sha256": p.model.sha256, "time": when,
        "patient_id": p.meta.get("PatientID", ""), "study_instance_uid": p.meta.get("StudyInstanceUID", ""),
        "intended_use": describe_research(p.outside_intended_use) if p.outside_intended_use is not None else "",
        **{name: value for name, (value, _) in layer_columns(p).items()},
        "threshold": "" if p.threshold is None else f"{p.threshold:.6f}",
        "export_study_instance_uid": (exported.study_instance_uid or "") if exported is not None else "",
        "sr_sop_instance_uid": exported.sop_instance_uids.get("sr", "") if exported is not None else "",
    }


def layer_columns(p: Prediction) -> dict[str, tuple[str, str]]:
    """The CSV columns of ``p``'s evidence layers that go to the CSV: column -> (value,
    meaning). A shape layer's first box fills ``<csv_box>_x0, _y0, _x1, _y1`` and its first
    point ``<csv_point>_x, _y`` (source pixels, 2 decimals)."""
    out: dict[str, tuple[str, str]] = {}
    for layer in p.evidence_layers():
        if not isinstance(layer, ShapeLayer) or "csv" not in layer.outputs:
            continue
        if layer.csv_box and layer.boxes:
            for name, v in zip(("x0", "y0", "x1", "y1"), layer.boxes[0]):
                out[f"{layer.csv_box}_{name}"] = (f"{float(v):.2f}", f"{layer.description}, {_BOX}")
        if layer.csv_point and layer.points:
            for name, v in zip(("x", "y"), layer.points[0]):
                out[f"{layer.csv_point}_{name}"] = (f"{float(v):.2f}", f"{layer.description}: point, {_BOX}")
    return out


def csv_fields(preds: Sequence[Prediction]) -> list[str]:
    """:data:`CSV_FIELDS`, then the columns of any evidence layer they do not know, in the
    order the predictions bring them (new columns stay at the end)."""
    fields = list(CSV_FIELDS)
    for p in preds:
        fields += [c for c in layer_columns(p) if c not in fields]
    return fields


def out_of_scope_row(o: OutOfScope, when: str) -> dict:
    """The row of an image that was not analysed: ids and size, no label, probability or
    box, and ``"outside the model's intended use: <reason>"``."""
    row = dict.fromkeys(CSV_FIELDS, "")
    row.update({
        "file": o.file, "frame": _frame(o.frame), "sop_instance_uid": o.meta.get("SOPInstanceUID", ""),
        "width": "" if o.width is None else str(o.width), "height": "" if o.height is None else str(o.height), "time": when,
        "patient_id": o.meta.get("PatientID", ""), "study_instance_uid": o.meta.get("StudyInstanceUID", ""),
        "intended_use": describe(o.reason),
    })
    return row


def csv_text(preds: Sequence[Prediction], anonymise: bool = False, out_of_scope: Sequence[OutOfScope] = (), exported: Sequence = ()) -> str:
    """The CSV: one row per prediction, then one per out-of-scope image. ``anonymise``
    replaces the path (file names can carry names) by ``image-0001``... and leaves the
    SOP Instance UID, patient id and study UID out. ``exported``: ExportResults of the
    same run (matched by source and frame) whose UIDs fill the join columns."""
    when = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=csv_fields(preds), restval="")
    w.writeheader()
    done = {(r.source, r.frame): r for r in exported if r.error is None}
    rows = [csv_row(p, when, done.get((p.file, p.frame))) for p in preds] + [out_of_scope_row(o, when) for o in out_of_scope]
    for i, row in enumerate(rows, 1):
        if anonymise:
            row.update(dict.fromkeys(IDENTIFYING, ""), file=f"image-{i:04d}")
        w.writerow(row)
    return buf.getvalue()


def companion_path(path: str | Path) -> Path:
    """``NAME.columns.json`` beside ``NAME.csv``."""
    path = Path(path)
    return path.with_name(path.stem + ".columns.json")


def companion_text(preds: Sequence[Prediction]) -> str:
    """What the columns mean, and the thresholds and models of the rows."""
    import json

    return json.dumps({
        "format": "MSFM Desktop findings CSV, one row per image or frame",
        "boxes": _BOX, "frames": COLUMNS["frame"],
        "thresholds": sorted({p.threshold for p in preds if p.threshold is not None}),
        "models": sorted({p.model.sha256 for p in preds}),
        "columns": {**COLUMNS, **{c: meaning for p in preds for c, (_, meaning) in layer_columns(p).items() if c not in COLUMNS}},
    }, indent=1, ensure_ascii=False)


def write_csv(preds: Sequence[Prediction], path: str | Path, anonymise: bool = False, out_of_scope: Sequence[OutOfScope] = (),
              exported: Sequence = ()) -> Path:
    """Write the CSV to ``path`` and its companion (:func:`companion_path`); neither may
    exist yet (exports never overwrite)."""
    side = companion_path(path)
    if side.exists():
        raise FileExistsError(str(side))
    out = write_new_file(Path(path), csv_text(preds, anonymise, out_of_scope, exported).encode("utf-8"))
    write_new_file(side, companion_text(preds).encode("utf-8"))
    return out


__all__ = ["COLUMNS", "companion_path", "CSV_FIELDS", "csv_fields", "layer_columns", "IDENTIFYING", "csv_row", "out_of_scope_row", "csv_text", "write_csv"]
