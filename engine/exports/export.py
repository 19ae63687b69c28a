"""Export predictions as DICOM (SC, SR, GSPS) into a folder: per image, all or nothing.

``export_dicom(preds, out_dir, options)`` writes, per prediction, the objects chosen in
:class:`ExportOptions` (see :mod:`.dicom_objects`). Objects of one image are written
together or not at all (:class:`~.writer.WriteGroup`), never over an existing file, and
never into the source: the source is read, not touched. With ``anonymise`` every object
goes through one dicognito ``Anonymizer`` (DICOM PS3.15 basic profile) and the removals of
:mod:`.deidentify`: one export shares one set of pseudonyms, so the SC, SR and GSPS of an
image still point at each other, and a DICOM source is written de-identified beside them
("source") so that their references resolve in the PACS.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from ..errors import Cancelled, ImageLoadError
from ..io import is_dicom, load_image, read_dataset
from ..tasks import drive
from ..types import Prediction
from .burn import DEFAULT_LAYERS
from .deidentify import deidentify
from .installation import device_observer_uid
from .writer import WriteGroup

if TYPE_CHECKING:  # highdicom (a quarter of a second) loads with the first export, not with the app
    from .dicom_objects import NewStudy, SeriesUIDs


@dataclass
class ExportOptions:
    """What to write. ``layers``: overlays burned into the SC (:data:`.burn.LAYERS`)."""

    sc: bool = True
    sr: bool = True
    gsps: bool = True
    layers: tuple[str, ...] = DEFAULT_LAYERS
    anonymise: bool = False
    #: engine.model.calibration.Calibration of the model: the SC then burns in the maps on the
    #: model's fixed scale and tones a normal result down, as the desktop viewer shows it.
    calibration: object | None = None
    #: Kind ("sc", "sr", "gsps") -> folder, for kinds that go elsewhere than the export's
    #: folder. One export run makes one set of UIDs and pseudonyms whatever the folders; a
    #: wrapped PNG/JPEG ("image") is written into every folder that holds an object
    #: referencing it, as the same instance.
    folders: dict[str, Path] = field(default_factory=dict)
    #: The patient of PNG/JPEG sources (they carry none); unset: a pseudonym per folder.
    patient_id: str | None = None
    patient_name: str | None = None


@dataclass
class ExportResult:
    """One image's outcome: the files written by kind, or why nothing was."""

    source: str
    files: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    frame: int | None = None
    #: The written objects' UIDs (pseudonymised ones under ``anonymise``): kind -> SOP
    #: Instance UID, and their study, so a CSV row joins them.
    sop_instance_uids: dict[str, str] = field(default_factory=dict)
    study_instance_uid: str | None = None


def make_anonymiser():
    """A dicognito anonymiser: PS3.15 basic profile, consistent within its lifetime."""
    from dicognito.anonymizer import Anonymizer

    return Anonymizer()


def _file_name(pred: Prediction, kind: str, ds: pydicom.Dataset, anonymised: bool) -> str:
    if anonymised:  # the source's file name may carry identifying text
        return f"{kind}-{ds.SOPInstanceUID}.dcm"
    stem = Path(pred.file).stem + (f"_f{pred.frame}" if pred.frame is not None else "")
    return f"{stem}.msfm-{kind}.dcm"


def _writer(ds: pydicom.Dataset) -> Callable:
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID  # anonymisation may have changed it
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return lambda fh: ds.save_as(fh, enforce_file_format=True)


def _as_read(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The dataset as a reader sees it: highdicom keeps dates and times as Python objects,
    which the anonymiser (written for values read from files) cannot shift."""
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


#: Patient/study attributes of Type 2 (present, possibly empty) that highdicom copies from
#: the source; real files often leave them out altogether.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2(ref: pydicom.Dataset) -> pydicom.Dataset:
    """The source header (in memory only) with missing Type 2 attributes present and empty."""
    for key in TYPE2:
        if key not in ref:
            setattr(ref, key, "")
    return ref


class NewStudies:
    """The new studies PNG/JPEG images are wrapped into during one export: one per source
    folder, with one patient (the user's, else a pseudonym per folder), one date and time,
    and increasing instance numbers."""

    def __init__(self, patient_id: str | None = None, patient_name: str | None = None) -> None:
        import datetime as _dt

        self._patient = (patient_id, patient_name)
        self._studies: dict[str, NewStudy] = {}
        self._count: dict[str, int] = {}
        self._now = _dt.datetime.now().replace(microsecond=0)

    def for_file(self, file: str) -> tuple[NewStudy, int]:
        """The study of ``file``'s folder and the next instance number in it."""
        from pydicom.uid import generate_uid

        from .dicom_objects import NewStudy, pseudonymous_patient

        folder = str(Path(file).resolve().parent)
        if folder not in self._studies:
            pid, name = pseudonymous_patient(folder, device_observer_uid())
            given_id, given_name = self._patient
            self._studies[folder] = NewStudy(generate_uid(), given_id or pid, given_name or ("" if given_id else name), self._now)
        self._count[folder] = self._count.get(folder, 0) + 1
        return self._studies[folder], self._count[folder]


def build_objects(pred: Prediction, options: ExportOptions, series: dict[str, SeriesUIDs], new_studies: NewStudies) -> dict[str, pydicom.Dataset]:
    """The datasets of one prediction (not yet written)."""
    from .dicom_objects import SeriesUIDs, image_from_pixels, presentation_state, secondary_capture, structured_report

    dicom = is_dicom(pred.file)
    # Pixels are needed to burn the SC and to wrap a PNG; SR and GSPS of a DICOM need only its header.
    pixels = load_image(pred.file, pred.frame or 0).pixels if options.sc or not dicom else None
    out: dict[str, pydicom.Dataset] = {}
    if dicom:
        ref = _with_type2(read_dataset(pred.file, stop_before_pixels=True))
        uids = series.setdefault(str(ref.StudyInstanceUID), SeriesUIDs.new())
    else:
        study, number = new_studies.for_file(pred.file)
        uids = series.setdefault(study.study_uid, SeriesUIDs.new())
        assert pixels is not None
        ref = out["image"] = image_from_pixels(pred, pixels, study, uids.image, number)
    if options.sc:
        assert pixels is not None
        out["sc"] = secondary_capture(pred, ref, pixels, uids.sc, options.layers, options.calibration)
    if options.sr:
        out["sr"] = structured_report(pred, ref, uids.sr)
    if options.gsps:
        out["gsps"] = presentation_state(pred, ref, uids.gsps)
    for ds in out.values():  # the study's description on every object of it (dcentvfy)
        if "StudyDescription" in ref and "StudyDescription" not in ds:
            ds.StudyDescription = ref.StudyDescription
    return out


def _folders(kind: str, objects: dict, out_dir: str | Path, options: ExportOptions) -> list[Path]:
    """Where an object of ``kind`` is written: its own folder; a wrapped image goes with
    every object that references it."""
    def where(k: str) -> Path:
        return Path(options.folders.get(k, out_dir))

    if kind not in ("image", "source"):
        return [where(kind)]
    out: list[Path] = []
    for k in objects:
        if k not in ("image", "source") and where(k).resolve() not in [f.resolve() for f in out]:
            out.append(where(k))
    return out or [Path(out_dir)]


def export_dicom(preds: Sequence[Prediction], out_dir: str | Path, options: ExportOptions | None = None,
                 progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None) -> list[ExportResult]:
    """:func:`iter_export` run to its end: ``progress(done, total)`` per image; ``cancel()``
    returning True stops before the next image."""
    report = None if progress is None else (lambda step: progress(step.done, step.total))
    return drive(iter_export(preds, out_dir, options), report, cancel) or []


@dataclass(frozen=True)
class ExportStep:
    """One image exported (or failed: ``result.error``): ``done`` of ``total``."""

    done: int
    total: int
    result: ExportResult


def iter_export(preds: Sequence[Prediction], out_dir: str | Path, options: ExportOptions | None = None) -> Generator[ExportStep, None, list[ExportResult]]:
    """Write the DICOM objects of every prediction into ``out_dir``, as a task
    (:mod:`engine.tasks`): an :class:`ExportStep` per image, then every result. A failing
    image is reported in its :class:`ExportResult` and the others go on;
    :class:`~engine.errors.Cancelled` thrown in stops before the next image and returns
    what was written."""
    options = options or ExportOptions()
    anonymiser = make_anonymiser() if options.anonymise else None
    series: dict[str, SeriesUIDs] = {}
    new_studies = NewStudies(options.patient_id, options.patient_name)
    sources_sent: set[str] = set()  # a multi-frame source goes once, with its first frame
    results = []
    for i, pred in enumerate(preds):
        res = ExportResult(pred.file, frame=pred.frame)
        try:
            objects = build_objects(pred, options, series, new_studies)
            if anonymiser is not None:
                if is_dicom(pred.file) and pred.file not in sources_sent:
                    # The derived objects reference the source by its pseudonymised UID: the
                    # de-identified source goes with them, or every reference would dangle.
                    objects = {"source": read_dataset(pred.file), **objects}
                objects = {k: _as_read(ds) for k, ds in objects.items()}
                for ds in objects.values():
                    deidentify(ds, anonymiser)
            group, kinds = WriteGroup(out_dir), []
            for kind, ds in objects.items():
                for folder in _folders(kind, objects, out_dir, options):
                    group.add(_file_name(pred, kind, ds, anonymiser is not None), _writer(ds), folder)
                    kinds.append(kind)
            for kind, path in zip(kinds, group.commit()):
                res.files.setdefault(kind, path)
            if "source" in objects:
                sources_sent.add(pred.file)
            res.sop_instance_uids = {k: str(ds.SOPInstanceUID) for k, ds in objects.items()}
            res.study_instance_uid = next((str(ds.StudyInstanceUID) for ds in objects.values()), None)
        except ImageLoadError as exc:
            res.error = exc.reason
        except OSError as exc:
            res.error = f"cannot write to {out_dir}: {exc.strerror or exc}"
        except Exception as exc:  # a malformed source header, a highdicom refusal...
            res.error = f"{type(exc).__name__}: {exc}"
        results.append(res)
        try:
            yield ExportStep(i + 1, len(preds), res)
        except Cancelled:
            break
    return results




__all__ = ["ExportOptions", "ExportResult", "ExportStep", "export_dicom", "iter_export", "build_objects", "make_anonymiser"]
