"""DICOM radiographs via pydicom + pylibjpeg plugins (SPEC §4).

Files are recognised by the ``DICM`` preamble, not by extension. Pixel data of any
standard transfer syntax is decoded (JPEG 2000 / JPEG-LS / JPEG lossless via pylibjpeg);
the Modality LUT (rescale) and the first VOI LUT or window are applied, values are
normalised by the range that Bits Stored allows (never by 65535), and MONOCHROME1 is
inverted so that 1 is always bright. That is what the model sees. A viewer asks for
``apply_voi=False`` instead: Modality LUT only, every header window offered as a
:class:`~engine.types.DisplayWindow`, and stored values recoverable under the cursor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from ..errors import ImageLoadError
from ..types import DisplayWindow, LoadedImage
from .limits import MAX_PIXELS, MAX_TOTAL_PIXELS

#: Header fields copied into :attr:`LoadedImage.meta` (as strings).
META_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "StudyDescription",
    "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality",
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "BodyPartExamined", "ViewPosition",
    "Laterality", "ImageLaterality", "PhotometricInterpretation", "BitsStored",
    "Rows", "Columns", "NumberOfFrames", "WindowCenter", "WindowWidth", "Manufacturer",
    "InstitutionName", "ReferringPhysicianName", "PixelSpacing", "ImagerPixelSpacing",
)
#: Modalities that are projection radiographs.
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "MG", "IO", "PX", "RF", "XA"}


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom logs every failed decoder plugin with a traceback; the engine reports the
    failure itself as one ImageLoadError line, so those logs are only noise."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


#: File names that claim DICOM: such a file is reported when it cannot be read, never skipped.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def has_preamble(path: str | Path) -> bool:
    """True when the file has the 128-byte preamble followed by ``DICM`` (PS3.10 §7.1)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_raw_dataset(path: str | Path) -> bool:
    """A dataset without preamble and File Meta (ACR-NEMA era or stripped by old tools):
    it starts with an element of group 0008 (or 0002), and pydicom, forced, reads an image
    or SOP class from it. The byte check keeps the parse off nearly every other file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    if len(head) < 8 or int.from_bytes(head[:2], "little") not in (0x0002, 0x0008):
        return False
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        return "SOPClassUID" in ds or ("Modality" in ds and "Rows" in ds)
    except Exception:  # anything unparsable is not a raw dataset
        return False


def is_dicom(path: str | Path) -> bool:
    """True for a DICOM file: with the ``DICM`` preamble, or a legacy raw dataset without
    it (:func:`_is_raw_dataset`)."""
    return has_preamble(path) or _is_raw_dataset(path)


def claims_dicom(path: str | Path) -> bool:
    """The file's name says DICOM (:data:`DICOM_SUFFIXES`)."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def read_dataset(path: str | Path, **kwargs) -> pydicom.Dataset:
    """``pydicom.dcmread`` for both forms: a file without preamble is read with ``force``,
    and its missing Transfer Syntax is set from the encoding pydicom found, so its pixels
    decode like any other file's."""
    preamble = has_preamble(path)
    ds = pydicom.dcmread(path, force=not preamble, **kwargs)
    if not preamble:
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            ds.file_meta = meta = pydicom.dataset.FileMetaDataset()
        if "TransferSyntaxUID" not in meta:
            implicit, little = ds.original_encoding if hasattr(ds, "original_encoding") else (True, True)
            meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit
                                      else pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
    return ds


def _meta(ds: pydicom.Dataset) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in META_KEYS:
        value = ds.get(key)
        if value is not None and value != "":
            out[key] = str(value)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        out["TransferSyntaxUID"] = str(ts)
    out["is_radiograph"] = "1" if str(ds.get("Modality", "")).upper() in RADIOGRAPH_MODALITIES else "0"
    return out


def _value_range(ds: pydicom.Dataset, voi_applied: bool = True) -> tuple[float, float]:
    """Output range of the Modality (+ VOI, when applied) LUT stage for this dataset (PS3.3 C.11)."""
    voi = ds.get("VOILUTSequence") if voi_applied else None
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        return 0.0, float(2 ** int(voi[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return lo, hi


def _multi(ds: pydicom.Dataset, key: str) -> list:
    v = ds.get(key)
    if v is None or v == "":
        return []
    return list(v) if isinstance(v, (list, tuple, MultiValue)) else [v]


def header_windows(ds: pydicom.Dataset, lo: float, hi: float, monochrome1: bool) -> tuple[DisplayWindow, ...]:
    """Every display window of the VOI LUT module (PS3.3 C.11.2) as black/white levels on
    pixels normalised from [lo, hi] (inverted for MONOCHROME1).

    LINEAR windows follow PS3.3 C.11.2.1.2.1 (``c - 0.5 ± (w - 1) / 2``); LINEAR_EXACT and
    SIGMOID use ``c ± w / 2`` (a sigmoid shown as its linear span); a VOI LUT table is
    shown as the linear ramp over its first..last mapped input value.
    """
    if hi <= lo:
        return ()
    centres, widths = _multi(ds, "WindowCenter"), _multi(ds, "WindowWidth")
    notes = [str(x) for x in _multi(ds, "WindowCenterWidthExplanation")]
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    spans: list[tuple[str, float, float]] = []
    for i, (c, w) in enumerate(zip(centres, widths)):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if w < 1:
            continue
        half = w / 2 if function in ("LINEAR_EXACT", "SIGMOID") else (w - 1) / 2
        centre = c if function in ("LINEAR_EXACT", "SIGMOID") else c - 0.5
        name = notes[i] if i < len(notes) and notes[i].strip() else f"window {i + 1}"
        spans.append((f"{name} (C {c:g} / W {w:g}{', sigmoid' if function == 'SIGMOID' else ''})", centre - half, centre + half))
    for i, item in enumerate(ds.get("VOILUTSequence") or []):
        try:
            n, first = int(item.LUTDescriptor[0]) or 65536, float(item.LUTDescriptor[1])
        except (AttributeError, IndexError, TypeError, ValueError):
            continue
        name = str(item.get("LUTExplanation", "") or f"VOI LUT {i + 1}")
        spans.append((f"{name} (LUT, shown linear)", first, first + n - 1))
    out = []
    for name, a, b in spans:
        a01, b01 = (a - lo) / (hi - lo), (b - lo) / (hi - lo)
        out.append(DisplayWindow(name, 1 - b01, 1 - a01) if monochrome1 else DisplayWindow(name, a01, b01))
    return tuple(out)


def _to_grey(frame: np.ndarray, photometric: str) -> np.ndarray:
    if frame.ndim == 3:  # colour (pydicom gives RGB for YBR by default)
        return frame[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return frame


def _normalised(frame: np.ndarray, photometric: str, lo: float, hi: float, mono1: bool) -> np.ndarray:
    """(H, W) float32 in [0, 1] of one frame's values over [lo, hi], 1 = bright."""
    grey = _to_grey(np.asarray(frame), photometric).astype(np.float32)
    norm = np.clip((grey - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(grey)
    return np.ascontiguousarray(1.0 - norm if mono1 else norm, dtype=np.float32)


def read_dicom(path: str | Path, apply_voi: bool = True, model_input: bool = False) -> list[LoadedImage]:
    """One :class:`LoadedImage` per frame of a DICOM image file.

    ``apply_voi=True`` (the model's input) applies the first VOI LUT or window;
    ``False`` (for display) stops after the Modality LUT and lists the header's windows.
    ``model_input`` with ``apply_voi=False`` also keeps the model's input from the same
    decode (:attr:`LoadedImage.model_pixels`), so an image shown and analysed is decoded once.

    Raises :class:`ImageLoadError` for files that are not DICOM, have no pixel data
    (SR, presentation states, ...), declare too many pixels, or cannot be decoded.
    """
    p = Path(path)
    try:
        ds = read_dataset(p)
    except PermissionError as exc:
        raise ImageLoadError(p, "permission denied") from exc
    except Exception as exc:  # the parser raises many types on damaged files (struct.error on a cut header, ...)
        why = str(exc) if isinstance(exc, InvalidDicomError) else f"{type(exc).__name__}: {exc}"
        raise ImageLoadError(p, f"not a readable DICOM file: {why}") from exc
    try:
        ts_uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        sop_uid = ds.get("SOPClassUID")
    except Exception as exc:  # lazily parsed garbage fails on first access
        raise ImageLoadError(p, f"not a readable DICOM file: {exc}") from exc
    if not ts_uid and not sop_uid:
        raise ImageLoadError(p, "not a readable DICOM file: DICM preamble but no transfer syntax or SOP class")
    sop = UID(str(sop_uid)) if sop_uid else None
    sop_name = sop.name if sop is not None else "unknown SOP class"
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageLoadError(p, f"no pixel data ({sop_name}); not an image")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageLoadError(p, f"invalid image geometry in header: {exc}") from exc
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise ImageLoadError(p, f"invalid image geometry {cols}x{rows}x{frames}")
    if rows * cols > MAX_PIXELS or rows * cols * frames > MAX_TOTAL_PIXELS:
        raise ImageLoadError(p, f"image declares {cols}x{rows} pixels x {frames} frames, above the limit; refused before decoding")
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
    ts_name = UID(str(ts)).name if ts else "unknown transfer syntax"
    try:
        with _quiet_pydicom():
            arr = ds.pixel_array
    except Exception as exc:  # decoders raise many types; all mean "undecodable"
        raise ImageLoadError(p, f"cannot decode pixel data ({ts_name}): {exc}") from exc

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    colour = int(ds.get("SamplesPerPixel", 1)) > 1
    if frames == 1:
        arr = arr[None]
    try:
        values = arr if colour else apply_modality_lut(arr, ds)
        voi_values = None
        if not colour and (apply_voi or model_input) and ("WindowCenter" in ds or "VOILUTSequence" in ds):
            try:
                voi_values = apply_voi_lut(values, ds, index=0)
            except (ValueError, TypeError, AttributeError, KeyError, IndexError):
                pass  # a broken VOI module: fall back to the full stored range
        voi_applied = apply_voi and voi_values is not None
        if apply_voi and voi_values is not None:
            values = voi_values
        lo, hi = (0.0, float(2 ** int(ds.get("BitsStored", 8)) - 1)) if colour else _value_range(ds, voi_applied)
        # The model's input beside the display pixels: VOI applied (or the same pixels when none applies).
        model = (voi_values, *_value_range(ds, True)) if model_input and not apply_voi and voi_values is not None else None
    except Exception as exc:
        raise ImageLoadError(p, f"invalid LUT data: {exc}") from exc
    meta = _meta(ds)
    mono1 = photometric == "MONOCHROME1"
    value_range = None if voi_applied or colour else ((hi, lo) if mono1 else (lo, hi))
    windows = () if apply_voi or colour else header_windows(ds, lo, hi, mono1)
    out = []
    for i in range(frames):
        norm = _normalised(values[i], photometric, lo, hi, mono1)
        model_pixels = _normalised(model[0][i], photometric, model[1], model[2], mono1) if model is not None else None
        out.append(LoadedImage(pixels=norm, source=p, frame=i if frames > 1 else None, kind="dicom", meta=meta,
                               value_range=value_range, windows=windows, model_pixels=model_pixels))
    return out
