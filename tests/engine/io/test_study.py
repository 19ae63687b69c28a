"""Study indexing (Patient ▸ Study ▸ Series ▸ Image) on the real DICOM and radiograph data."""

import shutil

from pydicom import dcmread
from pydicom.fileset import FileSet

from engine.io.study import ScanProgress, index_study
from tests.conftest import DICOM, XRAY


def by_name(index):
    return {im.path.name: im for im in index.images()}


def test_shared_dicom_folder_is_grouped_by_uids_and_the_sr_is_reported():
    seen: list[ScanProgress] = []
    index = index_study([DICOM], progress=seen.append)
    assert seen and seen[-1].done == seen[-1].total == 22  # SOURCES.md is not a candidate
    problems = {p.path.name: p.reason for p in index.problems}
    assert set(problems) == {"pydicom_test-SR.dcm"}
    assert "no pixel data (Comprehensive SR Storage)" in problems["pydicom_test-SR.dcm"]
    images = by_name(index)
    assert len(images) == 21 and "pydicom_test-SR.dcm" not in images
    assert images["pydicom-data_emri_small_jpeg_ls_lossless.dcm"].frames == 10
    # The three extensionless CRs: one patient, one study, three series.
    doe = next(p for p in index.patients.values() if p.patient_id == "77654033")
    assert doe.name == "Doe^Archibald" and len(doe.studies) == 1
    (study,) = doe.studies.values()
    assert sorted(im.path.name for se in study.series.values() for im in se.images) == ["6154", "6247", "6278"]
    assert len(study.series) == 3
    # RG3: eight files of one patient in two studies (RLE carries its own study UID), sorted by instance number.
    rg3 = next(p for p in index.patients.values() if p.patient_id == "11RG3")
    assert sorted(len([im for se in st.series.values() for im in se.images]) for st in rg3.studies.values()) == [1, 7]
    big = max(rg3.studies.values(), key=lambda st: sum(len(se.images) for se in st.series.values()))
    numbers = [im.instance_number for se in big.series.values() for im in se.images]
    assert numbers == sorted(numbers)


def test_png_folders_and_mura_study_folders(tmp_path):
    pngs = sorted((XRAY / "images").glob("*.png"))[:3]
    mura = tmp_path / "valid" / "XR_WRIST" / "patient11185"
    for i, (folder, src) in enumerate(zip(["study1_positive", "study2_negative", None], pngs)):
        dest = (mura / folder) if folder else (tmp_path / "loose")
        dest.mkdir(parents=True)
        shutil.copy(src, dest / f"image{i + 1}.png")
    (tmp_path / "loose" / "notes.txt").write_text("not an image")
    index = index_study([tmp_path])
    assert not index.problems  # notes.txt is not a candidate
    patient = next(p for p in index.patients.values() if p.patient_id == "patient11185")
    labels = {st.description: st.label for st in patient.studies.values()}
    assert labels == {"XR_WRIST study1_positive": 1, "XR_WRIST study2_negative": 0}
    loose = index.patients["raster"]
    assert loose.name == "PNG/JPEG images (no patient data)"
    assert [im.path.name for st in loose.studies.values() for se in st.series.values() for im in se.images] == ["image3.png"]
    # A file named explicitly that is neither PNG/JPEG nor DICOM is reported, not skipped silently.
    index = index_study([tmp_path / "loose" / "notes.txt"])
    assert [p.reason for p in index.problems] == ["not a PNG, JPEG or DICOM file"]


def test_dicomdir_is_read_and_missing_files_are_reported(tmp_path):
    fs = FileSet()
    for f in sorted((DICOM / "nested_extensionless").rglob("*")):
        if f.is_file():
            fs.add(dcmread(f))
    fs.write(tmp_path / "fs")
    listed = [inst.path for inst in FileSet(dcmread(tmp_path / "fs" / "DICOMDIR"))]
    assert len(listed) == 3
    shutil.move(listed[0], tmp_path / "elsewhere")
    index = index_study([tmp_path / "fs" / "DICOMDIR"])
    assert len(index.images()) == 2
    assert [p.reason for p in index.problems] == ["listed in DICOMDIR but missing"]


def test_truncated_header_is_a_problem_and_cancel_returns_a_partial_index(tmp_path):
    src = DICOM / "RG3_UNC.dcm"
    before = src.read_bytes()[:4096]
    (tmp_path / "cut.dcm").write_bytes(before[:300])
    shutil.copy(DICOM / "highdicom_dx_image.dcm", tmp_path / "ok.dcm")
    index = index_study([tmp_path])
    assert [im.path.name for im in index.images()] == ["ok.dcm"]
    assert [p.reason for p in index.problems] == ["no pixel data and no SOP class: truncated or damaged"]
    assert src.read_bytes()[:4096] == before  # sources are only read
    calls = []
    index = index_study([DICOM], progress=calls.append, cancel=lambda: len(calls) >= 2)
    assert index.cancelled and len(calls) == 2 and len(index.images()) + len(index.problems) == 2
