"""Reading labelled image collections into :class:`Sample` lists (SPEC §4).

Layouts:

* **labels CSV** -- ``file,label[,split,body_part]``, ``file`` relative to ``images/``
  beside the CSV (DICOM files allowed, detected by content); optional ``boxes.csv``
  beside it with ``file,x0,y0,x1,y1`` in original pixels, several rows per file.
* **MURA** -- ``<root>/{train,valid}/XR_<PART>/patientNNNNN/studyN_{positive,negative}/imageN.png``.
* **class folders** -- ``<root>/<class>/...`` with exactly two class folders; the abnormal
  one is named abnormal/positive/fractured/fracture/1 (or given).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MSFMError
from ..io.scan import MURA_STUDY, iter_image_files

ABNORMAL_NAMES = ("abnormal", "positive", "fractured", "fracture", "1", "yes")


class DataError(MSFMError):
    """A dataset cannot be used as given (empty, one class, malformed labels...)."""


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``boxes``: ground-truth xyxy boxes in original pixels (may be empty)."""

    path: Path
    label: int
    body_part: str = ""
    split: str = ""
    study: str = ""
    boxes: tuple[tuple[float, float, float, float], ...] = ()


@dataclass
class SampleSet:
    """Samples plus what was found wrong while reading them."""

    samples: list[Sample]
    layout: str
    problems: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """{body_part: {"0": n_normal, "1": n_abnormal}} for previews and loss weights."""
        out: dict[str, Counter] = {}
        for s in self.samples:
            out.setdefault(s.body_part or "all", Counter())[str(s.label)] += 1
        return {k: dict(v) for k, v in sorted(out.items())}


def check_usable(samples: list[Sample], what: str) -> None:
    """Raise :class:`DataError` for an empty or single-class sample list."""
    if not samples:
        raise DataError(f"{what}: no images")
    labels = {s.label for s in samples}
    if len(labels) < 2:
        raise DataError(f"{what}: only class {labels.pop()} present ({len(samples)} images); training needs both classes")


def _parse_label(raw: str, where: str) -> int:
    v = raw.strip().lower()
    if v in ("1", "1.0", "true", "abnormal", "positive", "yes"):
        return 1
    if v in ("0", "0.0", "false", "normal", "negative", "no"):
        return 0
    raise DataError(f"{where}: label {raw!r} is not 0/1")


def read_boxes_csv(box_csv: Path, problems: list[str] | None = None) -> dict[str, list[tuple[float, float, float, float]]]:
    """``boxes.csv`` (``file,x0,y0,x1,y1``, several rows per file allowed): xyxy boxes in
    original pixels by ``file`` (as written, relative to the images folder). Malformed
    rows go to ``problems`` and are skipped; a missing or unreadable file gives {}."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    try:
        fh = open(box_csv, newline="", encoding="utf-8-sig")
    except OSError:
        return boxes
    with fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            try:
                b = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            except (KeyError, TypeError, ValueError):
                if problems is not None:
                    problems.append(f"{box_csv.name} line {i}: malformed box, ignored")
                continue
            if b[2] > b[0] and b[3] > b[1]:
                boxes.setdefault((row.get("file") or "").strip(), []).append(b)  # type: ignore[arg-type]
    return boxes


def reference_boxes(image: Path) -> list[tuple[float, float, float, float]]:
    """Reference (ground-truth) boxes of ``image`` from a ``boxes.csv`` beside it or beside
    its ``images/`` folder (the labels-CSV layout), matched by the path relative to that
    folder; [] when there is none."""
    image = Path(image)
    for folder in (image.parent, image.parent.parent):
        box_csv = folder / "boxes.csv"
        if not box_csv.is_file():
            continue
        base = folder / "images" if (folder / "images").is_dir() else folder
        try:
            key = image.relative_to(base).as_posix()
        except ValueError:
            key = image.name
        found = read_boxes_csv(box_csv).get(key)
        if found:
            return found
    return []


def read_labels_csv(csv_path: Path) -> SampleSet:
    csv_path = Path(csv_path)
    images = csv_path.parent / "images"
    base = images if images.is_dir() else csv_path.parent
    base_abs = os.path.normpath(os.path.abspath(base))
    problems: list[str] = []
    boxes = read_boxes_csv(csv_path.parent / "boxes.csv", problems)
    samples = []
    try:
        fh = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {csv_path}: {exc.strerror or exc}") from exc
    with fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "file" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise DataError(f"{csv_path}: needs the columns file,label (found {reader.fieldnames})")
        for i, row in enumerate(reader, start=2):
            name = (row.get("file") or "").strip()
            if not name:
                problems.append(f"line {i}: empty file name, skipped")
                continue
            # Lexical check: '..' or an absolute name must not leave the folder; symlinks
            # inside it are the user's own choice and are followed.
            path = os.path.normpath(os.path.join(base_abs, name))
            if os.path.commonpath([base_abs, path]) != base_abs or path == base_abs:
                problems.append(f"line {i}: {name!r} points outside {base}, skipped")
                continue
            try:
                label = _parse_label(row.get("label") or "", f"{csv_path.name} line {i}")
            except DataError as exc:
                problems.append(f"{exc}, skipped")
                continue
            samples.append(Sample(
                path=base / name, label=label, body_part=(row.get("body_part") or "").strip(),
                split=(row.get("split") or "").strip(), study=(row.get("study") or "").strip(),
                boxes=tuple(boxes.get(name, ())),
            ))
    return SampleSet(samples, "labels-csv", problems)


def read_mura(root: Path) -> SampleSet:
    samples = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        split = {"valid": "val"}.get(split_dir.name, split_dir.name)
        for part_dir in sorted(split_dir.glob("XR_*")):
            part = part_dir.name[3:].lower()
            for study_dir in sorted(part_dir.glob("patient*/study*")):
                m = MURA_STUDY.match(study_dir.name)
                if not m or not study_dir.is_dir():
                    continue
                label = int(m.group(1) == "positive")
                study = f"{part_dir.name}/{study_dir.parent.name}/{study_dir.name}"
                for f in iter_image_files([study_dir]):
                    samples.append(Sample(path=f, label=label, body_part=part, split=split, study=study))
    return SampleSet(samples, "mura")


def read_class_folders(root: Path, abnormal: str | None = None) -> SampleSet:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) != 2:
        raise DataError(f"{root}: class-folder layout needs exactly two class folders, found {len(classes)} ({', '.join(c.name for c in classes)})")
    if abnormal is None:
        hits = [c for c in classes if c.name.lower() in ABNORMAL_NAMES]
        if len(hits) != 1:
            raise DataError(f"{root}: cannot tell which of {classes[0].name!r}/{classes[1].name!r} is abnormal; name it")
        abnormal = hits[0].name
    if abnormal not in {c.name for c in classes}:
        raise DataError(f"{root}: no class folder named {abnormal!r}")
    samples = [Sample(path=f, label=int(c.name == abnormal)) for c in classes for f in iter_image_files([c])]
    return SampleSet(samples, "class-folders")


def load_samples(source: str | Path, abnormal: str | None = None) -> SampleSet:
    """Detect the layout of ``source`` (a CSV file or a folder) and read it."""
    p = Path(source)
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise DataError(f"{p}: expected a labels CSV or a folder")
        return read_labels_csv(p)
    if not p.is_dir():
        raise DataError(f"{p}: no such file or folder")
    if (p / "labels.csv").is_file():
        return read_labels_csv(p / "labels.csv")
    if any((p / s).is_dir() and any((p / s).glob("XR_*")) for s in ("train", "valid")):
        return read_mura(p)
    return read_class_folders(p, abnormal)
