"""Build the bundled demo study in resources/demo/ from ../shared/data/xray (val split).

Seven FracAtlas radiographs (four fractured, three normal; several with burned-in
markers, so the overlays can be checked against letters), two of them also converted to
DICOM CR with patient/study/series tags of a fictitious demo patient. UIDs are derived
from fixed seeds, so rebuilding gives identical files.

    .venv/bin/python scripts/make_demo.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.uid import ComputedRadiographyImageStorage as CRImageStorage

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "resources" / "demo"
PNGS = {
    "IMG0000188.png": "forearm, fractured (distal radius), R marker and logo burned in",
    "IMG0000284.png": "both wrists, fractured",
    "IMG0001980.png": "foot, fractured (metatarsal)",
    "IMG0002447.png": "hip and femur, fractured (femoral shaft)",
    "IMG0000030.png": "hand, normal, R marker and logo burned in",
    "IMG0000033.png": "knee, normal, L marker and logo burned in",
    "IMG0001174.png": "shoulder, normal",
}
DICOMS = {"IMG0002447.png": ("LEG", "AP"), "IMG0000030.png": ("HAND", "PA")}


def uid(*seed: str) -> str:
    return generate_uid(entropy_srcs=["msfm-desktop-demo", *seed])


def to_dicom(png: Path, dst: Path, number: int, body_part: str, view: str) -> None:
    px = np.asarray(Image.open(png).convert("L"), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CRImageStorage
    meta.MediaStorageSOPInstanceUID = uid("instance", png.name)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(dst), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = CRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Demo^Fracture", "MSFM-DEMO-0001", "", "O"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = uid("study"), "DEMO1", "DEMO0001"
    ds.StudyDate, ds.StudyTime, ds.StudyDescription = "20260101", "090000", "MSFM Desktop demo study (FracAtlas, CC BY 4.0)"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID, ds.SeriesNumber = uid("series", png.name), number
    ds.SeriesDescription = f"{body_part.title()} {view} (from FracAtlas {png.stem})"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", body_part, view
    ds.Manufacturer = "MSFM Desktop demo (converted from PNG)"
    ds.InstanceNumber, ds.PatientOrientation = 1, ""
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.BurnedInAnnotation = "YES"  # the source radiographs carry burned-in markers
    ds.PixelData = px.tobytes()
    ds.save_as(dst, enforce_file_format=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = ap.parse_args()
    xray = Path(args.shared) / "data" / "xray"
    labels = {r["file"]: r for r in csv.DictReader(open(xray / "labels.csv"))}
    boxes = [b for b in csv.DictReader(open(xray / "boxes.csv")) if b["file"] in PNGS]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "dicom").mkdir(exist_ok=True)
    for name in PNGS:
        assert labels[name]["split"] == "val", name
        shutil.copyfile(xray / "images" / name, OUT / name)
    for i, (name, (part, view)) in enumerate(DICOMS.items(), start=1):
        to_dicom(xray / "images" / name, OUT / "dicom" / f"{Path(name).stem}.dcm", i, part, view)
    with open(OUT / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "body_part", "split", "description"])
        for name, desc in PNGS.items():
            r = labels[name]
            w.writerow([name, r["label"], r["body_part"], "val", desc])
    with open(OUT / "boxes.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "x0", "y0", "x1", "y1"])
        w.writeheader()
        w.writerows(boxes)
    print(f"demo study written to {OUT}")


if __name__ == "__main__":
    main()
