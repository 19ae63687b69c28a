"""Folder indexing: the header-only DICOM scan that opens a study vs reading every file
in full (pixels decoded), on >= 1,000 files made by copying ``../shared/data/dicom``
with new Study/Series/SOP Instance UIDs (every transfer syntax, the SR, the nested
extension-less files). Thumbnails are not part of opening: the browser makes them lazily.

    .venv/bin/python benchmarks/bench_indexing.py [--copies 48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pydicom
from common import DICOM, Row, print_rows, rotate
from pydicom.uid import generate_uid

from engine.errors import ImageLoadError
from engine.io import load_images
from engine.io.study import index_study

UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def make_corpus(root: Path, copies: int) -> list[Path]:
    """``copies`` copies of every DICOM file under ``DICOM``, each copy with its own UIDs
    (files of one original study stay one study in each copy). Reused when present."""
    sources = [p for p in sorted(DICOM.rglob("*")) if p.is_file() and p.suffix != ".md"]
    done = root / f".complete-{copies}"
    if done.exists():
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for k in range(copies):
        new: dict[str, str] = {}
        for src in sources:
            ds = pydicom.dcmread(src)
            for key in UID_KEYS:
                if key in ds:
                    old = str(ds.get(key))
                    ds[key].value = new.setdefault(old, generate_uid())
            if hasattr(ds, "file_meta") and "SOPInstanceUID" in ds:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            out = root / f"copy{k:03d}" / src.relative_to(DICOM)
            out.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(out)
    done.touch()
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def full_read(files: list[Path]) -> None:
    for f in files:
        try:
            load_images(f)
        except ImageLoadError:
            pass  # undecodable and SR files cost their read all the same


def run(copies: int = 48, subset_copies: int = 2, repeats: int = 2, root: Path | None = None) -> list[Row]:
    root = root or Path(tempfile.gettempdir()) / "msfm-bench-dicom"
    files = make_corpus(root, copies)
    t0 = time.perf_counter()
    index = index_study([root])
    t_all = time.perf_counter() - t0
    sub = [f for f in files if f.relative_to(root).parts[0] < f"copy{subset_copies:03d}"]
    t = rotate({"index": lambda: index_study(sub), "full": lambda: full_read(sub)}, repeats)
    rows = [
        Row("indexing", f"{len(sub)} files: full reads / header index", t["full"] / t["index"], 10.0, ">=", "x",
            f"{1000 * t['full'] / len(sub):.1f} vs {1000 * t['index'] / len(sub):.2f} ms/file"),
        Row("indexing", f"index {len(files)} files (s)", t_all, 2.0, "<=", "s",
            f"{len(index.images())} images, {len(index.problems)} problems"),
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=48)
    a = ap.parse_args()
    run(a.copies)
