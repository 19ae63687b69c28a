"""The DICOM objects of one prediction, built with highdicom (SPEC §7).

* **Secondary Capture** (RGB, overlays burned in, ``BurnedInAnnotation=YES``,
  ``ImageType=DERIVED\\SECONDARY``): from a DICOM source via ``SCImage.from_ref_dataset``
  (same patient and study, a new series, ``SourceImageSequence`` naming the source).
* **Comprehensive SR** (TID 1500 measurement report): the lesion box as the finding's
  planar ROI, a closed polyline in (column, row) pixels of the source image (origin at the
  top-left corner of the top-left pixel, as the boxes are), its finding type and DCM
  "Finding" evaluation the result at the model's threshold (SCT Abnormal or SCT Normal,
  :func:`result_code`), the abnormal probability (DCM "Probability"), the algorithm (name,
  version, model SHA-256) and this installation's Device Observer UID; the fused box as a
  second ROI (DCM "Image Region"), the region as context.
* **Grayscale Softcopy Presentation State** drawing the fused box and the 7 windows on
  the source image, so a PACS viewer shows them without burning them in.

A PNG/JPEG source has no DICOM to point at, so it is first wrapped as a grayscale
Secondary Capture in a new study (the "image" object); SR and GSPS reference that.
"""

from __future__ import annotations

import copy
import datetime as _dt
from dataclasses import dataclass

import cv2
import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import CodedConcept
from highdicom.utils import is_multiframe_image
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .. import __version__, style
from ..layers import drawing_order, finding_box
from ..types import Prediction
from .burn import DEFAULT_LAYERS, render_overlay
from .installation import device_observer_uid

MANUFACTURER = "MSFM Desktop"
SERIES_NUMBERS = {"image": 9900, "sc": 9901, "sr": 9902, "gsps": 9903}
RADIOGRAPHIC_PROCEDURE = CodedConcept("363680008", "SCT", "Radiographic imaging procedure")
NO_UNITS = CodedConcept("1", "UCUM", "no units")


def result_code(pred: Prediction):
    """The result at the model's threshold in standard codes: SCT 263654008 "Abnormal" or
    SCT 17621005 "Normal". It is both the finding type of the ROI and the value of the DCM
    121071 "Finding" evaluation, so a rules engine keyed on the finding reads a normal
    result as normal (no private coding scheme is used)."""
    return codes.SCT.Abnormal if pred.label else codes.SCT.Normal


@dataclass
class SeriesUIDs:
    """One new series per object kind for a whole export (a study's SCs share a series)."""

    image: str
    sc: str
    sr: str
    gsps: str

    @classmethod
    def new(cls) -> "SeriesUIDs":
        return cls(generate_uid(), generate_uid(), generate_uid(), generate_uid())


def box_polyline(box) -> np.ndarray:
    """(5, 2) closed polyline (column, row) of an xyxy box, first point repeated last."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def _series_description(pred: Prediction, what: str) -> str:
    # A result made outside the model's intended use (research override) says so first,
    # where a PACS list shows it.
    research = "RESEARCH USE ONLY " if pred.outside_intended_use else ""
    return f"{research}MSFM {what} {pred.model.backbone} {pred.model.sha256[:12]}"[:64]  # LO: 64 chars


def _algorithm(pred: Prediction) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name="MSFM", version=__version__, parameters=[f"model sha256 {pred.model.sha256}", f"backbone {pred.model.backbone}"])


def _fix_type2c(ds: pydicom.Dataset, ref: pydicom.Dataset | None) -> None:
    """Type 2C attributes highdicom leaves out: present (maybe empty) as PS3.3 asks."""
    if "Laterality" not in ds:
        ds.Laterality = ref.get("Laterality", "") if ref is not None else ""


@dataclass(frozen=True)
class NewStudy:
    """The study that PNG/JPEG images of one source folder are wrapped into, in one export.

    ``patient_id``/``patient_name``: given by the user, else a pseudonym clearly marked as
    one (:func:`pseudonymous_patient`), so a PACS does not file every such export under one
    blank patient and dcmtk accepts the objects. One date and time for all its objects."""

    study_uid: str
    patient_id: str
    patient_name: str
    when: _dt.datetime
    description: str = "MSFM analysis of imported PNG/JPEG radiographs"


def patient_problem(patient_id: str | None, patient_name: str | None) -> str | None:
    """Why a user-given PatientID (LO) or PatientName (PN, ``Family^Given^Middle^Prefix^Suffix``)
    cannot be written as DICOM, or None when both can (or are not given)."""
    import re

    if patient_id is not None:
        if not patient_id.strip():
            return "the patient ID is blank"
        if len(patient_id) > 64 or "\\" in patient_id or re.search(r"[\x00-\x1f]", patient_id):
            return "the patient ID must be at most 64 characters, without backslashes or control characters"
    if patient_name is not None:
        parts = patient_name.split("^")
        if len(parts) > 5 or any(len(p) > 64 for p in parts) or re.search(r"[\\=\x00-\x1f]", patient_name):
            return ("the patient name must be Family^Given^Middle^Prefix^Suffix (at most 5 parts of 64 characters), "
                    "without backslashes, '=' or control characters")
    return None


def pseudonymous_patient(folder: str, salt: str) -> tuple[str, str]:
    """(PatientID, PatientName) for a source folder without patient identity: the same
    folder on this installation always gives the same pseudonym; the folder's path cannot
    be read back from it (salted SHA-256, ``salt``: the installation's UID)."""
    import hashlib

    digest = hashlib.sha256(f"{salt}|{folder}".encode()).hexdigest()[:12].upper()
    return f"MSFM-PSEUDO-{digest}", f"PSEUDONYM^MSFM^{digest}"


def image_from_pixels(pred: Prediction, pixels01: np.ndarray, study: NewStudy, series_uid: str, instance_number: int = 1) -> pydicom.Dataset:
    """A PNG/JPEG radiograph as a grayscale Secondary Capture in ``study`` (8-bit when the
    pixels are 8-bit, else 16-bit), so SR and GSPS have a DICOM image to reference."""
    eight = np.allclose(pixels01 * 255.0, np.round(pixels01 * 255.0), atol=1e-3)
    arr = np.round(pixels01 * (255.0 if eight else 65535.0)).astype(np.uint8 if eight else np.uint16)
    ds = hd.sc.SCImage(
        pixel_array=arr, photometric_interpretation="MONOCHROME2", bits_allocated=8 if eight else 16, coordinate_system="PATIENT",
        study_instance_uid=study.study_uid, series_instance_uid=series_uid, series_number=SERIES_NUMBERS["image"], sop_instance_uid=generate_uid(),
        instance_number=instance_number, manufacturer=MANUFACTURER, patient_orientation=("L", "F"), study_date=study.when.date(), study_time=study.when.time(),
        patient_id=study.patient_id, patient_name=study.patient_name,
    )
    ds.ContentDate, ds.ContentTime = study.when.strftime("%Y%m%d"), study.when.strftime("%H%M%S")  # type: ignore[assignment]  # pydicom converts
    ds.PatientOrientation = ""  # type: ignore[assignment]  # unknown for a PNG; Type 2 allows empty
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: file names in the comments may be any script
    ds.SeriesDescription = "MSFM import of a PNG/JPEG radiograph"
    ds.StudyDescription = study.description
    ds.ImageComments = f"converted from {pred.file.rsplit('/', 1)[-1]}"[:10240]
    _fix_type2c(ds, None)
    return ds


def secondary_capture(pred: Prediction, ref: pydicom.Dataset, pixels01: np.ndarray, series_uid: str, layers=DEFAULT_LAYERS,
                      calibration=None) -> pydicom.Dataset:
    """The radiograph with the chosen overlays burned in, in ``ref``'s patient and study
    (``calibration``: as the viewer draws them, see :func:`.burn.render_overlay`)."""
    rgb = render_overlay(pred, pixels01, layers=layers, calibration=calibration)
    orientation = tuple(str(v) for v in ref.get("PatientOrientation", []) or [])
    ds = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8, coordinate_system="PATIENT",
        series_instance_uid=series_uid, series_number=SERIES_NUMBERS["sc"], sop_instance_uid=generate_uid(), instance_number=int(ref.get("InstanceNumber", 1) or 1),
        manufacturer=MANUFACTURER, patient_orientation=orientation if len(orientation) == 2 else ("L", "F"),
    )
    if len(orientation) != 2:
        ds.PatientOrientation = ""  # type: ignore[assignment]  # Type 2: empty when unknown
    ds.BurnedInAnnotation = "YES"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesDescription = _series_description(pred, "overlay")
    mark = f"; RESEARCH USE ONLY, outside the model's intended use: {pred.outside_intended_use}" if pred.outside_intended_use else ""
    ds.DerivationDescription = f"MSFM evidence overlay ({', '.join(layers)}); p(abnormal) {pred.probability:.3f}{mark}"[:1024]
    src = pydicom.Dataset()
    src.ReferencedSOPClassUID, src.ReferencedSOPInstanceUID = ref.SOPClassUID, ref.SOPInstanceUID
    if pred.frame is not None:
        src.ReferencedFrameNumber = pred.frame + 1
    ds.SourceImageSequence = [src]
    _fix_type2c(ds, ref)
    return ds


def structured_report(pred: Prediction, ref: pydicom.Dataset, series_uid: str) -> pydicom.Dataset:
    """TID 1500 measurement report on ``ref``: the lesion box as the finding's planar ROI
    (probability, label, algorithm), the fused box as a second ROI for the region (an
    older prediction without a lesion box: the fused box is the finding)."""
    source = hd.sr.SourceImageForRegion.from_source_image(ref, referenced_frame_numbers=_frame_numbers(pred, ref))
    algo = _algorithm(pred)
    result = result_code(pred)
    label = hd.sr.QualitativeEvaluation(name=codes.DCM.Finding, value=result)
    probability = hd.sr.Measurement(name=codes.DCM.Probability, value=float(pred.probability), unit=NO_UNITS, algorithm_id=algo)

    def roi(box, name: str, finding, with_result: bool):
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=box_polyline(box), source_image=source)
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name), referenced_region=region,
            finding_type=finding, algorithm_id=algo,
            measurements=[probability] if with_result else None, qualitative_evaluations=[label] if with_result else None,
        )

    # The lesion box is the finding; the eq. 11 fused box is the region to look at, as context.
    groups = []
    if pred.lesion_box is not None:
        groups.append(roi(pred.lesion_box, "MSFM lesion box", result, True))
        groups.append(roi(pred.fused_box, "MSFM region (fused box)", codes.DCM.ImageRegion, False))
    else:
        groups.append(roi(pred.fused_box, "MSFM fused box", result, True))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_observer_uid(), name="MSFM", model_name=pred.model.backbone, manufacturer_name=MANUFACTURER),
    )
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=observer),
                                     procedure_reported=RADIOGRAPHIC_PROCEDURE, imaging_measurements=groups)
    ds = hd.sr.ComprehensiveSR(
        evidence=[ref], content=report[0], series_instance_uid=series_uid, series_number=SERIES_NUMBERS["sr"], sop_instance_uid=generate_uid(),
        instance_number=int(ref.get("InstanceNumber", 1) or 1), manufacturer=MANUFACTURER, is_complete=True,
    )
    ds.SeriesDescription = _series_description(pred, "findings")
    return ds


def presentation_lut_shape(ref: pydicom.Dataset) -> str:
    """The Presentation LUT shape that keeps ``ref``'s polarity under a presentation state.

    A GSPS replaces the image's own display pipeline: with IDENTITY, the lowest P-value is
    black whatever the image's photometric interpretation, so a MONOCHROME1 radiograph
    (CR/DX films: bone dark in the stored values) would be shown as a negative (PS3.3
    C.11.6). The source's own shape wins where it has one (DX images must state it)."""
    own = str(ref.get("PresentationLUTShape", "") or "")
    if own in ("IDENTITY", "INVERSE"):
        return own
    return "INVERSE" if ref.get("PhotometricInterpretation") == "MONOCHROME1" else "IDENTITY"


def _display_header(ref: pydicom.Dataset) -> pydicom.Dataset:
    """``ref`` as highdicom reads it for the GSPS's display transformations.

    highdicom looks for a multi-frame image's Modality/VOI LUT in its Shared Functional
    Groups Sequence and fails with a bare AttributeError when a non-conformant file (e.g.
    an Enhanced MR without functional groups, ``pydicom-data_emri_small_jpeg_ls_lossless``)
    has none. Such a file states no rescale or window in functional groups, so empty items
    read it as it is (no Modality LUT, no VOI window); the file is not changed."""
    if "NumberOfFrames" in ref and ("SharedFunctionalGroupsSequence" not in ref or "PerFrameFunctionalGroupsSequence" not in ref):
        ref = copy.copy(ref)  # shallow: the header in memory, never the file
        if "SharedFunctionalGroupsSequence" not in ref:
            ref.SharedFunctionalGroupsSequence = [pydicom.Dataset()]
        if "PerFrameFunctionalGroupsSequence" not in ref:
            ref.PerFrameFunctionalGroupsSequence = [pydicom.Dataset() for _ in range(int(ref.NumberOfFrames))]
    return ref


def _frame_numbers(pred: Prediction, ref: pydicom.Dataset) -> list[int] | None:
    """The 1-based frame the prediction was made on (the engine counts from 0), or None when
    there is none or ``ref``'s SOP class has no frames to reference (frames in a single-frame
    SOP class, a non-conformant source: the image can be referenced, a frame of it cannot)."""
    if pred.frame is None or not is_multiframe_image(ref):
        return None
    return [pred.frame + 1]


def _lab(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` as the CIELab a DICOM Graphic Layer's display colour takes (rounded)."""
    rgb = np.array([[style.rgb(colour)]], dtype=np.float32) / 255.0
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[0, 0]
    return round(float(lab[0])), round(float(lab[1])), round(float(lab[2]))


def presentation_state(pred: Prediction, ref: pydicom.Dataset, series_uid: str) -> pydicom.Dataset:
    """GSPS on ``ref``: one graphic layer per shape layer of the prediction's evidence that
    belongs in a presentation state (:mod:`engine.layers`), bottom to top by role: for
    MSFM the ranked windows, the fused box (the region, with the label at the finding) and
    the lesion box with the peak (the finding, top layer).

    On a multi-frame source the presentation state and every annotation name the one frame
    the prediction was made on (``ReferencedFrameNumber``, 1-based), so a viewer draws frame
    4's boxes on frame 4 only; the source's polarity is kept (:func:`presentation_lut_shape`)."""
    px = hd.pr.AnnotationUnitsValues.PIXEL
    frames = _frame_numbers(pred, ref)
    ref = _display_header(ref)
    evidence = pred.evidence_layers()
    shapes = [layer for layer in drawing_order(evidence) if "gsps" in layer.outputs and (layer.boxes or layer.points)]
    finding = finding_box(evidence) or pred.fused_box
    x0, y0 = float(finding[0]), float(finding[1])
    # The label goes with the region (or, without one, the top layer).
    text_on = next((layer.name for layer in shapes if layer.role == "region"), shapes[-1].name if shapes else None)
    layers: list[hd.pr.GraphicLayer] = []
    annotations: list[hd.pr.GraphicAnnotation] = []
    for order, layer in enumerate(shapes, 1):
        single = len(set(layer.box_colours)) <= 1  # one colour for the layer; ranked windows keep the viewer's
        glayer = hd.pr.GraphicLayer(layer_name=f"MSFM {layer.name.upper()}"[:16], order=order, description=f"MSFM {layer.description or layer.label}"[:64],
                                    display_color=hd.color.CIELabColor(*_lab(layer.colour)) if single else None)
        objects = [hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POLYLINE, graphic_data=box_polyline(b), units=px) for b in layer.boxes]
        objects += [hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POINT, graphic_data=np.array([pt], dtype=np.float32), units=px)
                    for pt in layer.points]
        text = ([hd.pr.TextObject(text_value=f"MSFM p={pred.probability:.2f} {'abnormal' if pred.label else 'normal'}", units=px,
                                  anchor_point=(x0, max(0.0, y0)), anchor_point_visible=False)] if layer.name == text_on else None)
        layers.append(glayer)
        annotations.insert(0, hd.pr.GraphicAnnotation(referenced_images=[ref], graphic_layer=glayer, referenced_frame_number=frames,
                                                      graphic_objects=objects, text_objects=text))
    ds = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[ref], series_instance_uid=series_uid, series_number=SERIES_NUMBERS["gsps"], sop_instance_uid=generate_uid(),
        instance_number=int(ref.get("InstanceNumber", 1) or 1), manufacturer=MANUFACTURER, manufacturer_model_name="MSFM Desktop",
        software_versions=__version__, device_serial_number="none", content_label="MSFM",
        content_description=f"MSFM boxes, model {pred.model.sha256[:12]}"[:64], graphic_annotations=annotations, graphic_layers=layers,
        presentation_lut_transformation=hd.PresentationLUTTransformation(presentation_lut_shape=presentation_lut_shape(ref)),
    )
    if frames is not None:  # the presentation state applies to that frame only (PS3.3 C.11.11)
        for series in ds.ReferencedSeriesSequence:
            for item in series.ReferencedImageSequence:
                item.ReferencedFrameNumber = frames[0]
    ds.SeriesDescription = _series_description(pred, "boxes")
    _fix_type2c(ds, ref)
    return ds


__all__ = ["presentation_lut_shape", "NewStudy", "patient_problem", "pseudonymous_patient", "SeriesUIDs", "image_from_pixels", "secondary_capture",
           "structured_report", "presentation_state", "box_polyline"]
