"""A corpus of hostile and awkward inputs, generated (not committed) from the shared data.

``make_corpus(root)`` writes it and returns ``{name: (path, expect)}`` where ``expect`` is
``None`` for a file that must load, or a substring of the one-line reason it must be
refused with.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import DICOM, XRAY


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 100_000) -> bytes:
    """A valid PNG header declaring side x side pixels with almost no data."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b"")


def _dicom_from(arr: np.ndarray, frames: int = 1, rows: int | None = None, cols: int | None = None) -> pydicom.Dataset:
    src = pydicom.dcmread(DICOM / "highdicom_dx_image.dcm")  # a small real DX as the template
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = src.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    for key in ("SOPClassUID", "PatientName", "PatientID", "StudyInstanceUID", "Modality"):
        setattr(ds, key, src.get(key))
    ds.SeriesInstanceUID = generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows or arr.shape[-2], cols or arr.shape[-1]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = arr.astype(np.uint8).tobytes()
    return ds


def make_corpus(root: Path) -> dict[str, tuple[Path, str | None]]:
    root.mkdir(parents=True, exist_ok=True)
    png = sorted((XRAY / "images").glob("*.png"))[0]
    png_bytes = png.read_bytes()
    dcm_bytes = (DICOM / "RG3_UNC.dcm").read_bytes()
    rng = np.random.default_rng(0)
    out: dict[str, tuple[Path, str | None]] = {}

    def put(name: str, data: bytes, expect: str | None) -> None:
        p = root / name
        p.write_bytes(data)
        out[name] = (p, expect)

    put("empty.png", b"", "empty file")
    put("empty.dcm", b"", "empty file")
    put("random.png", rng.bytes(4096), "not a PNG, JPEG or DICOM file")
    put("random.dcm", rng.bytes(4096), "not a PNG, JPEG or DICOM file")
    put("dicm-then-garbage.dcm", b"\0" * 128 + b"DICM" + rng.bytes(2048), "not a readable DICOM file")
    put("truncated.png", png_bytes[: len(png_bytes) // 2], "cannot decode")
    jpg = io.BytesIO()
    Image.open(png).convert("L").save(jpg, "JPEG")
    put("truncated.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 3], "cannot decode")
    put("truncated.dcm", dcm_bytes[: len(dcm_bytes) // 2], "")  # refused; the reason depends on where it was cut
    put("bomb.png", png_bomb(), "refused")
    bomb = _dicom_from(np.zeros((1, 4, 4)), rows=65_535, cols=65_535)  # US: the largest a header can declare
    bomb.PixelData = b"\0" * 16
    buf = io.BytesIO()
    bomb.save_as(buf, enforce_file_format=True)
    put("bomb.dcm", buf.getvalue(), "refused before decoding")
    grey16 = (np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 257)
    for name, im in (("16bit.png", Image.fromarray(grey16)), ("palette.png", Image.open(png).convert("P")),
                     ("rgba.png", Image.open(png).convert("RGBA")), ("1x1.png", Image.new("L", (1, 1), 128)),
                     ("10x5000.png", Image.fromarray(rng.integers(0, 255, (5000, 10), dtype=np.uint8)))):
        b = io.BytesIO()
        im.save(b, "PNG")
        put(name, b.getvalue(), None)
    multi = _dicom_from(rng.integers(0, 255, (3, 64, 48)), frames=3)
    buf = io.BytesIO()
    multi.save_as(buf, enforce_file_format=True)
    put("multiframe.dcm", buf.getvalue(), None)
    nopix = _dicom_from(np.zeros((8, 8)))
    del nopix.PixelData
    buf = io.BytesIO()
    nopix.save_as(buf, enforce_file_format=True)
    put("no-pixel-data.dcm", buf.getvalue(), "no pixel data")
    put("non-ASCII é ü 名前 and spaces.png", png_bytes, None)
    (root / "x.dcm").mkdir(exist_ok=True)  # a directory with an image's name
    out["x.dcm"] = (root / "x.dcm", "is a directory")
    loop = root / "loop"
    loop.mkdir(exist_ok=True)
    if not (loop / "again").exists():
        os.symlink(loop, loop / "again")  # a symlink loop: scanning must not recurse forever
    return out


def escaping_labels_csv(root: Path, good: list[Path]) -> Path:
    """A labels CSV whose rows include paths escaping its folder."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["file,label,body_part,split"]
    for i, p in enumerate(good):
        dst = root / "images" / p.name
        if not dst.exists():
            dst.symlink_to(p)
        lines.append(f"{p.name},{i % 2},hand,{'train' if i < len(good) - 4 else 'val'}")
    lines += ["../../etc/passwd,1,hand,train", "/etc/shadow,0,hand,train"]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"
