"""Indexing a study folder: Patient ▸ Study ▸ Series ▸ Image, without decoding pixels.

The desktop browser shows this tree (issue 5), so it has to be quick on big folders: DICOM
headers are read with large values deferred (the pixel data is never loaded), PNG/JPEG
files are grouped by their folders, and a DICOMDIR is read with
:class:`pydicom.fileset.FileSet` so the files it lists are indexed even when they sit
outside the walked tree. Per-file problems (unreadable header, no pixel data, a file a
DICOMDIR names but that is missing) are collected with a one-line reason, never raised.
Progress and cancellation are plain callables, so a Qt worker or a CLI can drive it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet

from ..errors import Cancelled
from ..tasks import drive
from . import NOT_DICOM
from .dicom import claims_dicom, is_dicom, read_dataset
from .images import RASTER_SUFFIXES
from .scan import MURA_PATIENT, MURA_STUDY

#: Elements worth more than this many bytes (the pixel data) are not read while indexing.
DEFER_BYTES = 1024


@dataclass
class ImageEntry:
    """One image file in the index. ``frames`` > 1 for multi-frame DICOM."""

    path: Path
    kind: str  # "dicom" | "raster"
    instance_number: int | None = None
    frames: int = 1
    modality: str = ""
    sop_instance_uid: str = ""


@dataclass
class SeriesEntry:
    key: str  # SeriesInstanceUID, or the folder for PNG/JPEG
    number: int | None = None
    description: str = ""
    modality: str = ""
    images: list[ImageEntry] = field(default_factory=list)


@dataclass
class StudyEntry:
    key: str  # StudyInstanceUID, or the folder for PNG/JPEG
    date: str = ""
    description: str = ""
    accession: str = ""
    label: int | None = None  # MURA study folders name their label (1 positive, 0 negative)
    series: dict[str, SeriesEntry] = field(default_factory=dict)


@dataclass
class PatientEntry:
    key: str
    name: str = ""
    patient_id: str = ""
    studies: dict[str, StudyEntry] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanProblem:
    path: Path
    reason: str


@dataclass(frozen=True)
class ScanProgress:
    """``done`` of ``total`` candidate files indexed; ``path`` is the latest one."""

    done: int
    total: int
    path: str


@dataclass
class StudyIndex:
    """The tree of what a scan found, plus the files it could not use."""

    patients: dict[str, PatientEntry] = field(default_factory=dict)
    problems: list[ScanProblem] = field(default_factory=list)
    cancelled: bool = False

    def images(self) -> list[ImageEntry]:
        """Every image, in tree order (patient, study, series, instance number, path)."""
        return [im for p in self.patients.values() for st in p.studies.values() for se in st.series.values() for im in se.images]

    def add(self, patient: PatientEntry, study: StudyEntry, series: SeriesEntry, image: ImageEntry) -> None:
        p = self.patients.setdefault(patient.key, patient)
        st = p.studies.setdefault(study.key, study)
        se = st.series.setdefault(series.key, series)
        se.images.append(image)

    def sort(self) -> None:
        for p in self.patients.values():
            for st in p.studies.values():
                for se in st.series.values():
                    se.images.sort(key=lambda im: (im.instance_number is None, im.instance_number or 0, str(im.path)))


def _text(ds, keyword: str) -> str:
    v = ds.get(keyword)
    return "" if v is None else str(v).strip()


def _int(ds, keyword: str) -> int | None:
    try:
        v = ds.get(keyword)
        return None if v in (None, "") else int(v)
    except (TypeError, ValueError):
        return None


def _dicomdir_files(dicomdir: Path, problems: list[ScanProblem]) -> list[Path]:
    """Files a DICOMDIR references; missing ones become problems."""
    try:
        ds = pydicom.dcmread(dicomdir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # missing files are reported below, one line each
            fs = FileSet(ds)
    except Exception as exc:  # pydicom raises many types for a damaged DICOMDIR
        problems.append(ScanProblem(dicomdir, f"DICOMDIR not readable: {' '.join(str(exc).split())[:160]}"))
        return []
    out = [Path(inst.path) for inst in fs if Path(inst.path).is_file()]
    # FileSet drops records whose file is gone; the record sequence still names them.
    for rec in ds.get("DirectoryRecordSequence", []):
        ref = rec.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        p = dicomdir.parent.joinpath(*parts)
        if not p.is_file():
            problems.append(ScanProblem(p, "listed in DICOMDIR but missing"))
    return out


def find_candidates(paths: Iterable[str | Path], problems: list[ScanProblem], cancel: Callable[[], bool] | None = None) -> list[Path]:
    """Image candidates under ``paths``: PNG/JPEG by suffix, DICOM by preamble, and the
    files each DICOMDIR lists. Symlinked folders are not followed (no loops)."""
    out: list[Path] = []
    for folder in walk_candidates(paths, problems, out):
        if cancel and cancel():
            break
    return out


def walk_candidates(paths: Iterable[str | Path], problems: list[ScanProblem], out: list[Path]) -> Iterator[str]:
    """Append the image candidates under ``paths`` to ``out`` (see :func:`find_candidates`),
    yielding each folder's path as it is done, so a long walk can report and be stopped."""
    seen: set[Path] = set()

    def take(p: Path) -> None:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            out.append(p)

    for raw in paths:
        root = Path(raw)
        if not root.exists():
            problems.append(ScanProblem(root, "no such file or folder"))
            continue
        if root.is_file():
            if root.name == "DICOMDIR":
                for f in _dicomdir_files(root, problems):
                    take(f)
            else:
                take(root)
            continue
        for dirpath, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                f = Path(dirpath) / name
                if name == "DICOMDIR":
                    for g in _dicomdir_files(f, problems):
                        take(g)
                elif f.suffix.lower() in RASTER_SUFFIXES or claims_dicom(f) or is_dicom(f):
                    take(f)
            yield dirpath


def _add_dicom(index: StudyIndex, path: Path) -> None:
    try:
        ds = read_dataset(path, defer_size=DEFER_BYTES)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        index.problems.append(ScanProblem(path, f"DICOM header not readable: {' '.join(str(exc).split())[:160]}"))
        return
    except Exception as exc:  # a truncated header can surface as almost anything
        index.problems.append(ScanProblem(path, f"DICOM header not readable: {type(exc).__name__}"))
        return
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        if sop is None:
            index.problems.append(ScanProblem(path, "no pixel data and no SOP class: truncated or damaged"))
        else:
            index.problems.append(ScanProblem(path, f"no pixel data ({getattr(sop, 'name', '') or sop}); not an image"))
        return
    pid, pname = _text(ds, "PatientID"), _text(ds, "PatientName")
    patient = PatientEntry(key=f"{pid}\x00{pname}", name=pname, patient_id=pid)
    study_uid = _text(ds, "StudyInstanceUID") or f"no-study:{path.parent}"
    study = StudyEntry(key=study_uid, date=_text(ds, "StudyDate"), description=_text(ds, "StudyDescription"), accession=_text(ds, "AccessionNumber"))
    series_uid = _text(ds, "SeriesInstanceUID") or f"no-series:{path.parent}"
    modality = _text(ds, "Modality")
    series = SeriesEntry(key=series_uid, number=_int(ds, "SeriesNumber"), description=_text(ds, "SeriesDescription"), modality=modality)
    image = ImageEntry(path=path, kind="dicom", instance_number=_int(ds, "InstanceNumber"), frames=_int(ds, "NumberOfFrames") or 1,
                       modality=modality, sop_instance_uid=_text(ds, "SOPInstanceUID"))
    index.add(patient, study, series, image)


def _add_raster(index: StudyIndex, path: Path) -> None:
    """PNG/JPEG: the folder is the series and the study; a MURA ``patientNNNNN`` folder is
    the patient, and its ``studyN_positive|negative`` folder carries the study's label.
    Elsewhere all PNG/JPEG folders sit under one pseudo-patient."""
    folder = path.parent
    if MURA_STUDY.match(folder.name) and MURA_PATIENT.match(folder.parent.name):
        patient = PatientEntry(key=f"folder:{folder.parent}", name=folder.parent.name, patient_id=folder.parent.name)
        label = 1 if folder.name.endswith("_positive") else 0
        study = StudyEntry(key=f"folder:{folder}", description=f"{folder.parent.parent.name} {folder.name}", label=label)
    else:
        # PNG/JPEG carry no patient: one pseudo-patient holds every such folder.
        patient = PatientEntry(key="raster", name="PNG/JPEG images (no patient data)")
        study = StudyEntry(key=f"folder:{folder}", description=folder.name)
    series = SeriesEntry(key=f"folder:{folder}", description=folder.name)
    index.add(patient, study, series, ImageEntry(path=path, kind="raster"))


def scan_study(paths: Iterable[str | Path]) -> Generator[ScanProgress, None, StudyIndex]:
    """Index ``paths`` (folders, files, DICOMDIRs) without decoding pixels, as a task
    (:mod:`engine.tasks`): yields a :class:`ScanProgress` at the start, per folder walked
    (``total`` 0 while the files are still being found) and per file indexed; returns the
    :class:`StudyIndex`. :class:`~engine.errors.Cancelled` thrown in returns the partial
    index with ``cancelled`` set."""
    index = StudyIndex()
    try:
        yield ScanProgress(0, 0, "")
        files: list[Path] = []
        for folder in walk_candidates(paths, index.problems, files):
            yield ScanProgress(0, 0, folder)
        for i, f in enumerate(files):
            if not os.access(f, os.R_OK):
                index.problems.append(ScanProblem(f, "not readable (permission denied)"))
            elif is_dicom(f):
                _add_dicom(index, f)
            elif f.suffix.lower() in RASTER_SUFFIXES:
                _add_raster(index, f)
            else:
                empty = f.stat().st_size == 0
                index.problems.append(ScanProblem(f, "empty file (0 bytes)" if empty else NOT_DICOM if claims_dicom(f) else "not a PNG, JPEG or DICOM file"))
            yield ScanProgress(i + 1, len(files), str(f))
    except Cancelled:
        index.cancelled = True
    index.sort()
    return index


def index_study(
    paths: Iterable[str | Path],
    progress: Callable[[ScanProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> StudyIndex:
    """:func:`scan_study` run to its end. ``progress`` is called after each file indexed;
    ``cancel`` is polled between steps and, when it returns True, the partial index comes
    back with ``cancelled`` set."""
    report = None if progress is None else (lambda p: progress(p) if p.total else None)
    index = drive(scan_study(paths), report, cancel)
    assert index is not None  # scan_study returns on cancel too
    return index


__all__ = ["index_study", "scan_study", "find_candidates", "walk_candidates",
           "StudyIndex", "PatientEntry", "StudyEntry", "SeriesEntry", "ImageEntry", "ScanProblem", "ScanProgress"]
