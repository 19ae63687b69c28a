"""The findings report a clinician takes away: one PDF per study, and the same PDF as a
DICOM Encapsulated PDF in that study so it reaches the PACS with the other objects.

A page per analysed image (:mod:`.report_pdf` draws it): the image with the evidence the
viewer shows (:func:`.burn.render_overlay`, same layers and calibration as the Secondary
Capture), the finding and its place in words, the probability and operating point with the
model's known validation sensitivity/specificity, the model's name and SHA-256, the patient
and study, the date. A last page lists the study's images that were not labelled (outside the
model's intended use) with the reason.

Who and which study a report names comes from the DICOM objects this export run wrote for
the image when there are any (so an anonymised report shows the same pseudonyms as its
objects, and a PNG folder the same patient as its wrapped images); else from the DICOM
source; a PNG/JPEG without an export run shows the given patient or the folder's pseudonym
(:class:`.export.NewStudies`). Anonymised without DICOM objects, identity is withheld.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .. import __version__
from ..io import load_image
from ..io.dicom import is_dicom, read_dataset
from ..scope import OutOfScope
from ..types import Prediction
from .burn import DEFAULT_LAYERS, render_overlay
from .dicom_objects import MANUFACTURER
from .export import ExportResult, NewStudies
from .report_pdf import PageText, ReportCanvas, finding_lines, now_text
from .writer import WriteGroup

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SERIES_NUMBER = 9904
WITHHELD = "withheld (anonymised)"
#: Patient and General Study attributes the Encapsulated PDF copies from the study's exported objects.
PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientIdentityRemoved",
                 "DeidentificationMethod", "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                 "AccessionNumber", "StudyDescription")
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
         "StudyID", "AccessionNumber")


@dataclass(frozen=True)
class Identity:
    """The patient and study a report names. ``header``: the exported object they were read
    from (the Encapsulated PDF joins that study); None when nothing was exported."""

    key: str
    patient: str
    study: str
    header: pydicom.Dataset | None = field(default=None, compare=False)


@dataclass
class StudyReport:
    identity: Identity
    items: list[tuple[Prediction, ExportResult | None]] = field(default_factory=list)
    outside: list[OutOfScope] = field(default_factory=list)


@dataclass(frozen=True)
class ReportResult:
    """One study's report: the PDF, its DICOM Encapsulated PDF (None when no DICOM was
    exported for the study), the pages, or why it was not written."""

    study: str
    pdf: Path | None
    dicom: Path | None
    pages: int
    error: str | None = None
    sop_instance_uid: str | None = None


def _exported_header(res: ExportResult | None) -> pydicom.Dataset | None:
    if res is None or res.error:
        return None
    for kind in ("sr", "sc", "gsps", "image", "source"):
        if kind in res.files:
            return pydicom.dcmread(res.files[kind], stop_before_pixels=True)
    return None


def _describe(ds: pydicom.Dataset) -> tuple[str, str]:
    name = str(ds.get("PatientName", "") or "").replace("^", " ").strip() or "(no name)"
    patient = f"{name}, ID {ds.get('PatientID', '') or '(none)'}"
    date = str(ds.get("StudyDate", "") or "")
    study = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else "date unknown"
    if ds.get("AccessionNumber"):
        study += f", accession {ds.AccessionNumber}"
    if ds.get("StudyDescription"):
        study += f", {ds.StudyDescription}"
    return patient, f"{study}; Study Instance UID {ds.get('StudyInstanceUID', '')}"


def identity_of(file: str, res: ExportResult | None, anonymise: bool, new_studies: NewStudies) -> Identity:
    """Who and which study the report of ``file`` names (see the module doc)."""
    header = _exported_header(res)
    if header is not None:
        return Identity(str(header.StudyInstanceUID), *_describe(header), header=header)
    if is_dicom(file):
        src = read_dataset(file, stop_before_pixels=True)
        key = str(src.get("StudyInstanceUID", "") or Path(file).parent)
        return Identity(key, WITHHELD, WITHHELD) if anonymise else Identity(key, *_describe(src))
    key = f"folder:{Path(file).parent}"
    if anonymise:
        return Identity(key, WITHHELD, "imported PNG/JPEG images, not written as DICOM")
    study, _ = new_studies.for_file(file)
    name = study.patient_name.replace("^", " ") or "(no name)"
    return Identity(key, f"{name}, ID {study.patient_id}", f"imported PNG/JPEG images of {Path(file).parent.name}/, not written as DICOM")


def group_by_study(preds: Sequence[Prediction], exported: Sequence[ExportResult] = (), outside: Sequence[OutOfScope] = (),
                   anonymise: bool = False, patient_id: str | None = None, patient_name: str | None = None) -> list[StudyReport]:
    """The studies of an export, in first-seen order, each with its predictions (and their
    export results, matched by source file and frame) and its images outside intended use."""
    by_source = {(r.source, r.frame): r for r in exported}
    new_studies = NewStudies(patient_id, patient_name)
    studies: dict[str, StudyReport] = {}
    for p in preds:
        res = by_source.get((p.file, p.frame))
        ident = identity_of(p.file, res, anonymise, new_studies)
        studies.setdefault(ident.key, StudyReport(ident)).items.append((p, res))
    for o in outside:
        uid = o.meta.get("StudyInstanceUID")
        key = uid if uid else f"folder:{Path(o.file).parent}"
        match = next((s for s in studies.values() if s.identity.key == key or (s.items and Path(s.items[0][0].file).parent == Path(o.file).parent
                                                                              and not uid)), None)
        if match is None:
            ident = identity_of(o.file, None, anonymise, new_studies)
            match = studies.setdefault(ident.key, StudyReport(ident))
        match.outside.append(o)
    return list(studies.values())


def _image_line(p: Prediction, i: int, n: int, res: ExportResult | None, anonymise: bool) -> str:
    frame = f", frame {p.frame + 1}" if p.frame is not None else ""
    if anonymise:
        uid = (res.sop_instance_uids.get("source") or res.sop_instance_uids.get("image")) if res is not None else None
        return f"image {i} of {n}{frame}" + (f"; SOP Instance UID {uid}" if uid else "")
    uid = p.meta.get("SOPInstanceUID") or (res.sop_instance_uids.get("image") if res is not None else None)
    return f"{Path(p.file).name}{frame}" + (f"; SOP Instance UID {uid}" if uid else "")


def _model_line(p: Prediction) -> str:
    return f"Model: {p.model.name} ({p.model.backbone}, {p.model.input_size} px), SHA-256 {p.model.sha256}; MSFM Desktop {__version__}"


def render_report(study: StudyReport, calibration=None, layers=DEFAULT_LAYERS, anonymise: bool = False,
                  when: _dt.datetime | None = None) -> tuple[bytes, int]:
    """(PDF bytes, pages) of one study."""
    made = now_text(when)
    n = len(study.items)
    pdf = ReportCanvas("MSFM findings report", n + (1 if study.outside else 0))
    for i, (p, res) in enumerate(study.items, 1):
        text = PageText(study.identity.patient, study.identity.study, _image_line(p, i, n, res, anonymise), made)
        rgb = render_overlay(p, load_image(p.file, p.frame or 0).pixels, layers=layers, calibration=calibration)
        pdf.image_page(text, rgb, finding_lines(p, calibration), _model_line(p), p.outside_intended_use)
    if study.outside:
        rows = []
        for j, o in enumerate(study.outside, 1):
            name = f"image {n + j}" if anonymise else Path(o.file).name
            rows.append(f"{name}{f', frame {o.frame + 1}' if o.frame is not None else ''}: {o.reason}")
        text = PageText(study.identity.patient, study.identity.study, f"{len(study.outside)} image(s) not labelled", made)
        model = _model_line(study.items[0][0]) if study.items else f"MSFM Desktop {__version__}"
        pdf.list_page(text, "Not labelled: outside the model's intended use", rows, model)
    return pdf.bytes(), pdf.pages


def _source_refs(study: StudyReport, anonymise: bool) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of the images the report shows, as the PACS holds
    them: the wrapped or de-identified image this run wrote, else the DICOM source itself."""
    refs: list[tuple[str, str]] = []
    for p, res in study.items:
        written = [res.files[k] for k in ("source", "image") if res is not None and k in res.files]
        ds: pydicom.Dataset
        if written:
            ds = pydicom.dcmread(written[0], stop_before_pixels=True)
        elif not anonymise and is_dicom(p.file):
            ds = read_dataset(p.file, stop_before_pixels=True)
        else:  # a later frame of an anonymised source: its first frame's result named it
            continue
        ref = (str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        if ref not in refs:
            refs.append(ref)
    return refs


def encapsulated_pdf(pdf: bytes, header: pydicom.Dataset, series_uid: str, sources: Sequence[tuple[str, str]] = (),
                     when: _dt.datetime | None = None) -> pydicom.Dataset:
    """The report as a DICOM Encapsulated PDF (PS3.3 A.45.1) in the study of ``header`` (an
    object this export wrote, whose patient and study it copies), in a new series."""
    when = when or _dt.datetime.now()
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for kw in PATIENT_STUDY:
        if kw in header:
            setattr(ds, kw, header[kw].value)
    for kw in TYPE2:
        if kw not in ds:
            setattr(ds, kw, "")
    ds.SOPClassUID, ds.SOPInstanceUID = ENCAPSULATED_PDF, generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "DOC", series_uid, SERIES_NUMBER
    ds.SeriesDescription = "MSFM findings report (decision support, not a diagnosis)"
    ds.Manufacturer, ds.SoftwareVersions = MANUFACTURER, __version__
    ds.ConversionType = "SYN"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the pages print the patient's name and ID
    ds.DocumentTitle = "MSFM findings report"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")  # OB: even length, NUL padded
    if sources:
        items = []
        for sop_class, sop_uid in sources:
            item = pydicom.Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_uid
            items.append(item)
        ds.SourceInstanceSequence = items
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:40] or "study"


def write_reports(preds: Sequence[Prediction], folder: str | Path, exported: Sequence[ExportResult] = (), outside: Sequence[OutOfScope] = (),
                  calibration=None, layers=DEFAULT_LAYERS, anonymise: bool = False, dicom: bool = True,
                  patient_id: str | None = None, patient_name: str | None = None, dicom_folder: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[ReportResult]:
    """Write one PDF per study into ``folder`` and, with ``dicom`` and where the study has
    exported DICOM objects, its Encapsulated PDF into ``dicom_folder`` (default: beside the
    study's SR or SC). A study that fails is reported in its result; the others go on."""
    studies = group_by_study(preds, exported, outside, anonymise, patient_id, patient_name)
    when = _dt.datetime.now()
    series = generate_uid()  # the reports of one export run form one series (in each study they join)
    results: list[ReportResult] = []
    for i, study in enumerate(studies, 1):
        ident = study.identity
        label = ident.key if not anonymise or ident.header is not None else f"study {i}"
        try:
            pdf, pages = render_report(study, calibration, layers, anonymise, when)
            header = ident.header
            stem = f"msfm-report-{_safe(str(header.PatientID)) if header is not None and header.get('PatientID') else f'study-{i}'}-{when:%Y%m%d-%H%M%S}"
            group = WriteGroup(folder)
            group.add(f"{stem}.pdf", lambda fh, b=pdf: fh.write(b))
            uid = None
            if dicom and header is not None:
                sources = _source_refs(study, anonymise)
                ds = encapsulated_pdf(pdf, header, series, sources, when)
                uid = str(ds.SOPInstanceUID)
                where = Path(dicom_folder) if dicom_folder is not None else _beside(study)
                group.add(f"{stem}.msfm-report.dcm", lambda fh, d=ds: d.save_as(fh, enforce_file_format=True), where)
            paths = group.commit()
            results.append(ReportResult(label, paths[0], paths[1] if len(paths) > 1 else None, pages, None, uid))
        except OSError as exc:
            results.append(ReportResult(label, None, None, 0, f"cannot write to {folder}: {exc.strerror or exc}"))
        except Exception as exc:  # an unreadable image or header: this study only
            results.append(ReportResult(label, None, None, 0, f"{type(exc).__name__}: {exc}"))
        if progress is not None:
            progress(i, len(studies))
    return results


def _beside(study: StudyReport) -> Path:
    for _, res in study.items:
        for kind in ("sr", "sc", "gsps", "image"):
            if res is not None and kind in res.files:
                return res.files[kind].parent
    raise ValueError("no exported object to put the report beside")


__all__ = ["ENCAPSULATED_PDF", "Identity", "ReportResult", "StudyReport", "encapsulated_pdf", "group_by_study", "identity_of",
           "render_report", "write_reports"]
