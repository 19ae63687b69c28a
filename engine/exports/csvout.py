"""CSV export (SPEC §7): one row per image with the source, SOP Instance UID, probability,
label, stage probabilities, object and fused box (original pixels), model hash and time.

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

from ..scope import OutOfScope, describe, describe_research
from ..types import Prediction
from .writer import write_new_file

CSV_FIELDS = [
    "file", "frame", "sop_instance_uid", "width", "height", "probability", "label",
    "p_main", "p_object", "p_parts", "object_x0", "object_y0", "object_x1", "object_y1",
    "fused_x0", "fused_y0", "fused_x1", "fused_y1", "model_sha256", "time",
    "patient_id", "study_instance_uid", "intended_use",
    "lesion_x0", "lesion_y0", "lesion_x1", "lesion_y1", "peak_x", "peak_y",
]
#: Columns that identify the patient or the source, blanked (or replaced) by ``anonymise``.
IDENTIFYING = ("sop_instance_uid", "patient_id", "study_instance_uid")


def csv_row(p: Prediction, when: str) -> dict:
    """The row of one prediction; ``intended_use`` is empty unless it was made under the
    research override, where it holds the out-of-scope mark."""
    ob, fb = p.object_box, p.fused_box
    return {
        "file": p.file, "frame": "" if p.frame is None else p.frame, "sop_instance_uid": p.meta.get("SOPInstanceUID", ""),
        "width": p.width, "height": p.height, "probability": f"{p.probability:.6f}", "label": p.label,
        "p_main": f"{p.stages['main']:.6f}", "p_object": f"{p.stages['object']:.6f}", "p_parts": f"{p.stages['parts']:.6f}",
        "object_x0": f"{ob[0]:.2f}", "object_y0": f"{ob[1]:.2f}", "object_x1": f"{ob[2]:.2f}", "object_y1": f"{ob[3]:.2f}",
        "fused_x0": f"{fb[0]:.2f}", "fused_y0": f"{fb[1]:.2f}", "fused_x1": f"{fb[2]:.2f}", "fused_y1": f"{fb[3]:.2f}",
        "model_sha256": p.model.sha256, "time": when,
        "patient_id": p.meta.get("PatientID", ""), "study_instance_uid": p.meta.get("StudyInstanceUID", ""),
        "intended_use": describe_research(p.outside_intended_use) if p.outside_intended_use is not None else "",
        **_xy("lesion_", ("x0", "y0", "x1", "y1"), p.lesion_box), **_xy("peak_", ("x", "y"), p.peak),
    }


def _xy(prefix: str, names: tuple[str, ...], values) -> dict:
    """Coordinate columns (source pixels, 2 decimals), empty when the value is absent."""
    return {prefix + n: "" if values is None else f"{float(v):.2f}" for n, v in zip(names, values if values is not None else [None] * len(names))}


def out_of_scope_row(o: OutOfScope, when: str) -> dict:
    """The row of an image that was not analysed: ids and size, no label, probability or
    box, and ``"outside the model's intended use: <reason>"``."""
    row = dict.fromkeys(CSV_FIELDS, "")
    row.update({
        "file": o.file, "frame": "" if o.frame is None else o.frame, "sop_instance_uid": o.meta.get("SOPInstanceUID", ""),
        "width": "" if o.width is None else o.width, "height": "" if o.height is None else o.height, "time": when,
        "patient_id": o.meta.get("PatientID", ""), "study_instance_uid": o.meta.get("StudyInstanceUID", ""),
        "intended_use": describe(o.reason),
    })
    return row


def csv_text(preds: Sequence[Prediction], anonymise: bool = False, out_of_scope: Sequence[OutOfScope] = ()) -> str:
    """The CSV: one row per prediction, then one per out-of-scope image. ``anonymise``
    replaces the path (file names can carry names) by ``image-0001``... and leaves the
    SOP Instance UID, patient id and study UID out."""
    when = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    rows = [csv_row(p, when) for p in preds] + [out_of_scope_row(o, when) for o in out_of_scope]
    for i, row in enumerate(rows, 1):
        if anonymise:
            row.update(dict.fromkeys(IDENTIFYING, ""), file=f"image-{i:04d}")
        w.writerow(row)
    return buf.getvalue()


def write_csv(preds: Sequence[Prediction], path: str | Path, anonymise: bool = False, out_of_scope: Sequence[OutOfScope] = ()) -> Path:
    """Write the CSV to ``path``, which must not exist yet (exports never overwrite)."""
    return write_new_file(Path(path), csv_text(preds, anonymise, out_of_scope).encode("utf-8"))


__all__ = ["CSV_FIELDS", "IDENTIFYING", "csv_row", "out_of_scope_row", "csv_text", "write_csv"]
