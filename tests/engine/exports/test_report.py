"""The findings report (issue 19, point 10): one PDF per study with a page per analysed
image, turned into pictures by poppler's pdftoppm and read back by pdftotext; the same PDF
as a DICOM Encapsulated PDF in the study, checked by dciodvfy and dcentvfy; anonymised
reports carry the export's pseudonyms and nothing of the source."""

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.conftest import DICOM, XRAY, dciodvfy_errors

PNGS = sorted((XRAY / "images").glob("*.png"))[:2]
SOURCES = [DICOM / "RG3_UNC.dcm", *PNGS, DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm"]


@pytest.fixture(scope="module")
def preds(resnet18_model):
    from engine.infer import Predictor

    preds = Predictor(resnet18_model, device="cpu", enforce_scope=False).predict(SOURCES)
    # Two frames of the Enhanced MR: two pages of one study.
    return [p for p in preds if p.frame in (None, 0, 3)]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is needed: scripts/bootstrap.sh installs it (poppler-utils, dicom3tools)"
    return path


def pdf_text(pdf: Path) -> str:
    return subprocess.run([tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def pdf_pages(pdf: Path, out: Path) -> list[Path]:
    out.mkdir(exist_ok=True)
    subprocess.run([tool("pdftoppm"), "-r", "40", "-png", str(pdf), str(out / "page")], check=True, capture_output=True)
    return sorted(out.glob("page-*.png"))


def test_place_in_words():
    from engine.exports.report_pdf import place_in_words

    assert place_in_words((0, 0, 10, 10), 300, 300) == "upper left"
    assert place_in_words((140, 140, 160, 160), 300, 300) == "centre"
    assert place_in_words((280, 140, 300, 160), 300, 300) == "middle right"
    assert place_in_words((140, 290, 160, 300), 300, 300) == "lower centre"


def test_one_report_per_study_with_its_encapsulated_pdf(tmp_path, preds):
    from engine.exports.export import ExportOptions, export_dicom
    from engine.exports.report import write_reports

    exported = export_dicom(preds, tmp_path / "dicom", ExportOptions(patient_id="HOSP-77", patient_name="Müller^Zoë"))
    assert [r.error for r in exported] == [None] * len(preds)
    reports = write_reports(preds, tmp_path / "reports", exported)
    assert [r.error for r in reports] == [None] * 3  # the CR, the PNG folder, the MR
    assert [r.pages for r in reports] == [1, 2, 2]
    for rep in reports:
        pages = pdf_pages(rep.pdf, tmp_path / rep.pdf.stem)
        assert len(pages) == rep.pages
        text = pdf_text(rep.pdf)
        assert text.count("Decision support, not a diagnosis") >= rep.pages and "Probability of abnormal:" in text
        assert preds[0].model.sha256[:40] in text.replace("\n", "")
        enc = pydicom.dcmread(rep.dicom)
        assert dciodvfy_errors(rep.dicom) == []
        assert enc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and enc.MIMETypeOfEncapsulatedDocument == "application/pdf"
        assert enc.EncapsulatedDocument[:enc.EncapsulatedDocumentLength] == rep.pdf.read_bytes()
        # In the study of the objects exported for its images, naming the images it shows.
        study = [r for r in exported if r.study_instance_uid == enc.StudyInstanceUID]
        assert study and rep.dicom.parent == study[0].files["sr"].parent
        sr = pydicom.dcmread(study[0].files["sr"])
        assert (enc.PatientID, str(enc.PatientName)) == (sr.PatientID, str(sr.PatientName))
        shown = {i.ReferencedSOPInstanceUID for i in enc.SourceInstanceSequence}
        for r in study:
            src = r.files.get("image") or next(p for p in SOURCES if str(p) == r.source)
            if "image" in r.files or r.frame in (None, 0):
                assert pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID in shown
    cr, png, mr = reports
    assert "Müller Zoë, ID HOSP-77" in pdf_text(png.pdf)  # the given patient, in its own script
    assert PNGS[0].name in pdf_text(png.pdf) and "frame 4" in pdf_text(mr.pdf)
    # dcentvfy: the CR study with its report is one consistent entity set.
    cr_files = [*next(r for r in exported if r.source == str(SOURCES[0])).files.values(), cr.dicom, SOURCES[0]]
    out = subprocess.run([tool("dcentvfy"), *map(str, cr_files)], capture_output=True, text=True)
    assert not [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")], out.stderr


def test_anonymised_report_names_only_pseudonyms(tmp_path, preds):
    from engine.exports.export import ExportOptions, export_dicom
    from engine.exports.report import write_reports

    exported = export_dicom(preds[:1], tmp_path / "dicom", ExportOptions(anonymise=True))
    (rep,) = write_reports(preds[:1], tmp_path / "reports", exported, anonymise=True)
    src = pydicom.dcmread(SOURCES[0], stop_before_pixels=True)
    raw = rep.pdf.read_bytes()
    text = pdf_text(rep.pdf)
    for secret in (str(src.PatientID), str(src.PatientName).split("^")[0], str(src.StudyInstanceUID), str(src.SOPInstanceUID),
                   SOURCES[0].name, str(SOURCES[0].parent)):
        assert secret and secret not in text and secret.encode() not in raw, secret
    enc = pydicom.dcmread(rep.dicom)
    sr = pydicom.dcmread(exported[0].files["sr"])
    assert enc.PatientIdentityRemoved == "YES" and enc.PatientID == sr.PatientID and enc.PatientID in text
    assert "image 1 of 1" in text
    # Without DICOM objects an anonymised report withholds the identity.
    (bare,) = write_reports(preds[:1], tmp_path / "bare", anonymise=True)
    assert bare.dicom is None and "withheld (anonymised)" in pdf_text(bare.pdf)


def test_images_outside_the_intended_use_get_a_page_saying_so(tmp_path, preds):
    from engine.exports.report import write_reports
    from engine.scope import OutOfScope

    meta = {"StudyInstanceUID": str(pydicom.dcmread(SOURCES[0], stop_before_pixels=True).StudyInstanceUID)}
    refused = [OutOfScope(file=str(DICOM / "RG3_UNC.dcm"), frame=None, reason="body part CHEST is not a limb", meta=meta)]
    (rep,) = write_reports(preds[:1], tmp_path, outside=refused, dicom=False)
    assert rep.pages == 2 and rep.dicom is None
    assert "Not labelled: outside the model's intended use" in pdf_text(rep.pdf) and "CHEST is not a limb" in pdf_text(rep.pdf)


def test_cli_report_beside_the_dicom_and_a_bad_patient_refused_before_work(tmp_path, resnet18_model):
    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    bad = msfm("predict", str(PNGS[0]), "--checkpoint", str(ck), "--device", "cpu", "--report", str(tmp_path / "r0"), "--patient-id", "A\\B")
    assert bad.returncode != 0 and "patient ID" in bad.stderr and not (tmp_path / "r0").exists()
    r = msfm("predict", *map(str, PNGS), "--checkpoint", str(ck), "--device", "cpu", "--report", str(tmp_path / "reports"),
             "--dicom-sr", str(tmp_path / "sr"), "--patient-id", "HOSP-9", "--quiet")
    assert r.returncode == 0, r.stderr
    (pdf,) = (tmp_path / "reports").glob("msfm-report-HOSP-9-*.pdf")
    assert len(pdf_pages(pdf, tmp_path / "pages")) == 2 and "ID HOSP-9" in pdf_text(pdf)
    (enc,) = (tmp_path / "sr").glob("*.msfm-report.dcm")
    assert pydicom.dcmread(enc).PatientID == "HOSP-9" and dciodvfy_errors(enc) == []
