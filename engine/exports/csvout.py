"""CSV export (SPEC §7): one row per image with the source, SOP Instance UID, probability,
label, stage probabilities, object and fused box (original pixels), model hash and time."""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Sequence
from pathlib import Path

from ..types import Prediction
from .writer import write_new_file

CSV_FIELDS = [
    "file", "frame", "sop_instance_uid", "width", "height", "probability", "label",
    "p_main", "p_object", "p_parts", "object_x0", "object_y0", "object_x1", "object_y1",
    "fused_x0", "fused_y0", "fused_x1", "fused_y1", "model_sha256", "time",
]


def csv_row(p: Prediction, when: str) -> dict:
    ob, fb = p.object_box, p.fused_box
    return {
        "file": p.file, "frame": "" if p.frame is None else p.frame, "sop_instance_uid": p.meta.get("SOPInstanceUID", ""),
        "width": p.width, "height": p.height, "probability": f"{p.probability:.6f}", "label": p.label,
        "p_main": f"{p.stages['main']:.6f}", "p_object": f"{p.stages['object']:.6f}", "p_parts": f"{p.stages['parts']:.6f}",
        "object_x0": f"{ob[0]:.2f}", "object_y0": f"{ob[1]:.2f}", "object_x1": f"{ob[2]:.2f}", "object_y1": f"{ob[3]:.2f}",
        "fused_x0": f"{fb[0]:.2f}", "fused_y0": f"{fb[1]:.2f}", "fused_x1": f"{fb[2]:.2f}", "fused_y1": f"{fb[3]:.2f}",
        "model_sha256": p.model.sha256, "time": when,
    }


def csv_text(preds: Sequence[Prediction], anonymise: bool = False) -> str:
    """The CSV; ``anonymise`` replaces the path (file names can carry names) by
    ``image-0001``... and leaves the SOP Instance UID out."""
    when = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for i, p in enumerate(preds, 1):
        row = csv_row(p, when)
        if anonymise:
            row.update(file=f"image-{i:04d}", sop_instance_uid="")
        w.writerow(row)
    return buf.getvalue()


def write_csv(preds: Sequence[Prediction], path: str | Path, anonymise: bool = False) -> Path:
    """Write the CSV to ``path``, which must not exist yet (exports never overwrite)."""
    return write_new_file(Path(path), csv_text(preds, anonymise).encode("utf-8"))


__all__ = ["CSV_FIELDS", "csv_row", "csv_text", "write_csv"]
