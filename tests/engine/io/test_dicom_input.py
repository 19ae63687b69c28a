"""DICOM input as hospitals have it (issue 19, point 7): a legacy dataset without the
128-byte preamble and File Meta is read like any other DICOM, and a file whose name claims
DICOM but is not is reported by every scan, never skipped silently."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import DICOM, dciodvfy_errors

CR = DICOM / "nested_extensionless/77654033/CR1/6154"  # real CR, 16 x 16, MONOCHROME1


@pytest.fixture
def folder(tmp_path) -> Path:
    """A study folder: the CR as a legacy raw dataset (implicit VR LE, no preamble, no
    File Meta), the CR as it is, and a ``.dcm`` that is text."""
    d = tmp_path / "study"
    d.mkdir()
    ds = pydicom.dcmread(CR)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(d / "legacy", implicit_vr=True, little_endian=True, enforce_file_format=False)
    (d / "modern").write_bytes(CR.read_bytes())
    (d / "notes.dcm").write_text("report dictated 12:04, see PACS\n" * 20)
    return d


def test_legacy_dataset_reads_like_the_file_it_came_from(folder):
    from engine.io import is_dicom, load_image

    raw = (folder / "legacy").read_bytes()
    assert raw[128:132] != b"DICM" and raw[:2] == b"\x08\x00"
    assert is_dicom(folder / "legacy")
    a, b = load_image(folder / "legacy"), load_image(CR)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.meta["SOPInstanceUID"] == b.meta["SOPInstanceUID"] and a.meta["PatientID"] == b.meta["PatientID"]


def test_every_scan_reports_a_dcm_that_is_not_dicom(folder):
    from engine.io import NOT_DICOM, ImageLoadError, load_image
    from engine.io.scan import iter_image_files
    from engine.io.study import index_study
    from engine.library.folder_check import _unreadable_header

    assert sorted(p.name for p in iter_image_files([folder])) == ["legacy", "modern", "notes.dcm"]
    with pytest.raises(ImageLoadError, match="named as DICOM, but no DICM preamble"):
        load_image(folder / "notes.dcm")
    index = index_study([folder])
    assert [(p.path.name, p.reason) for p in index.problems] == [("notes.dcm", NOT_DICOM)]
    assert sorted(im.path.name for im in index.images()) == ["legacy", "modern"]
    assert _unreadable_header(folder / "notes.dcm") == NOT_DICOM and _unreadable_header(folder / "legacy") is None


def test_cli_analyses_the_legacy_file_exports_it_and_names_the_impostor(folder, tmp_path, resnet18_model):
    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    r = msfm("predict", str(folder), "--checkpoint", str(ck), "--device", "cpu", "--research-outside-intended-use",
             "--dicom-sr", str(tmp_path / "sr"), "--quiet")
    assert "notes.dcm: not a PNG, JPEG or DICOM file: named as DICOM" in r.stderr
    srs = [pydicom.dcmread(f) for f in sorted((tmp_path / "sr").glob("legacy*sr.dcm"))]
    assert len(srs) == 1 and srs[0].PatientID == pydicom.dcmread(CR, stop_before_pixels=True).PatientID
    for f in (tmp_path / "sr").glob("legacy*"):
        assert dciodvfy_errors(f) == [], f
