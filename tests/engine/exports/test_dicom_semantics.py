"""What the DICOM exports mean to the tools a hospital uses (issue 19): a presentation
state rendered by dcmtk keeps the source's polarity, the SR reads a normal result as normal
in standard codes with one Device Observer UID per installation, and each frame of a
multi-frame source gets annotations on that frame only."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import DICOM, XRAY, dciodvfy_errors

EMRI = DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm"  # Enhanced MR, 10 frames, no functional groups


@pytest.fixture(scope="module")
def preds(resnet18_model, tmp_path_factory):
    from engine.infer import Predictor

    # The MONOCHROME2 CR (RG2) exists here only in compressions dcmtk cannot decode
    # (JPEG 2000); an uncompressed copy of it, made with pydicom, is what dcmp2pgm renders.
    rg2 = pydicom.dcmread(DICOM / "RG2_J2KI.dcm")
    rg2.decompress()
    copy = tmp_path_factory.mktemp("rg2") / "RG2_UNC.dcm"
    rg2.save_as(copy, enforce_file_format=True)
    files = [DICOM / "RG3_UNC.dcm", DICOM / "highdicom_dx_image.dcm", copy, sorted((XRAY / "images").glob("*.png"))[0], EMRI]
    return Predictor(resnet18_model, device="cpu", enforce_scope=False).predict(files)


def render(image: Path, out: Path, pstate: Path | None = None, frame: int | None = None) -> np.ndarray:
    """The image as dcmtk's dcmp2pgm displays it, through ``pstate`` when given (8-bit grey)."""
    tool = shutil.which("dcmp2pgm")
    assert tool, "dcmp2pgm (Debian package dcmtk) is needed: scripts/bootstrap.sh installs it"
    cmd = [tool, *(["--pstate", str(pstate)] if pstate else []), *(["--frame", str(frame)] if frame else []), str(image), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    return np.asarray(Image.open(out), dtype=float)


def test_gsps_keeps_the_polarity_of_every_source(tmp_path, preds):
    """Rendered through the GSPS, each source looks as it does on its own: MONOCHROME1 CR
    (no shape of its own), a MONOCHROME1 DX stating INVERSE, a MONOCHROME2 CR and a wrapped
    PNG. Before the fix the MONOCHROME1 ones came out as negatives (correlation −1)."""
    from engine.exports.dicom_objects import presentation_lut_shape
    from engine.exports.export import export_dicom

    results = export_dicom(preds[:4], tmp_path)
    assert [r.error for r in results] == [None] * 4
    for pred, res in zip(preds, results):
        source = res.files.get("image", Path(pred.file))  # a PNG is wrapped; the GSPS points at the wrap
        src = pydicom.dcmread(source, stop_before_pixels=True)
        pr = pydicom.dcmread(res.files["gsps"])
        expected = "INVERSE" if src.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
        assert pr.PresentationLUTShape == expected == presentation_lut_shape(src)
        alone = render(source, tmp_path / "alone.pgm")
        shown = render(source, tmp_path / "shown.pgm", pstate=res.files["gsps"])
        r = np.corrcoef(alone.ravel(), shown.ravel())[0, 1]
        assert r > 0.99, (pred.file, r)
        assert dciodvfy_errors(res.files["gsps"]) == []


def test_sr_finding_reads_normal_for_a_normal_result_in_standard_codes(tmp_path, preds):
    from dataclasses import replace

    from engine.exports.export import export_dicom

    p = preds[0]
    normal, abnormal = replace(p, label=0, probability=0.40), replace(p, label=1, probability=0.90)
    results = export_dicom([normal, abnormal], tmp_path)
    uids = set()
    for res, want in zip(results, ("17621005", "263654008")):
        sr = pydicom.dcmread(res.files["sr"])
        items = []
        stack = list(sr.ContentSequence)
        while stack:
            it = stack.pop()
            items.append(it)
            stack += list(it.get("ContentSequence", []))
        codes = [(it.ConceptNameCodeSequence[0].CodeValue, it.ConceptCodeSequence[0]) for it in items if it.get("ValueType") == "CODE"]
        # DCM 121071 "Finding": the lesion ROI's finding type and its evaluation carry the
        # result; the region ROI is typed DCM 111030 "Image Region" (context, no result).
        findings = [(c.CodeValue, c.CodingSchemeDesignator) for name, c in codes if name == "121071"]
        assert sorted(findings) == sorted([(want, "SCT"), (want, "SCT"), ("111030", "DCM")]), findings
        # No private code is used, so none needs declaring; any that were would be listed here.
        schemes = {c.CodingSchemeDesignator for _, c in codes} | {it.ConceptNameCodeSequence[0].CodingSchemeDesignator for it in items if "ConceptNameCodeSequence" in it}
        declared = {d.CodingSchemeDesignator for d in sr.get("CodingSchemeIdentificationSequence", [])}
        assert {s for s in schemes if s.startswith("99")} <= declared
        assert not any(s.startswith("99") for s in schemes)
        uids |= {str(it.UID) for it in items if it.get("ValueType") == "UIDREF" and it.ConceptNameCodeSequence[0].CodeValue == "121012"}
        assert dciodvfy_errors(res.files["sr"]) == []
    again = export_dicom([normal], tmp_path / "again")
    sr = pydicom.dcmread(again[0].files["sr"])
    stack, more = list(sr.ContentSequence), set()
    while stack:
        it = stack.pop()
        stack += list(it.get("ContentSequence", []))
        if it.get("ValueType") == "UIDREF" and it.ConceptNameCodeSequence[0].CodeValue == "121012":
            more.add(str(it.UID))
    assert len(uids) == 1 and more == uids  # one Device Observer UID for this installation, across exports


def test_each_frame_gets_its_own_annotations_and_a_nonconformant_enhanced_mr_exports(tmp_path, preds):
    """The Enhanced MR here lacks its functional groups; its GSPSs are still built (no
    modality or VOI transform stated) and each names its frame, 1-based."""
    from engine.exports.export import export_dicom

    frames = [p for p in preds if p.file == str(EMRI)]
    assert [p.frame for p in frames] == list(range(10))
    results = export_dicom(frames, tmp_path)
    assert [r.error for r in results] == [None] * 10
    for p, res in zip(frames, results):
        pr = pydicom.dcmread(res.files["gsps"])
        assert [int(i.ReferencedFrameNumber) for s in pr.ReferencedSeriesSequence for i in s.ReferencedImageSequence] == [p.frame + 1]
        for a in pr.GraphicAnnotationSequence:
            assert [int(i.ReferencedFrameNumber) for i in a.ReferencedImageSequence] == [p.frame + 1]
        sr = pydicom.dcmread(res.files["sr"])
        assert dciodvfy_errors(res.files["gsps"]) == [] and dciodvfy_errors(res.files["sr"]) == []
        assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(EMRI, stop_before_pixels=True).SOPInstanceUID
    # Not rendered with dcmp2pgm: dcmtk refuses any presentation state with an empty
    # PatientName, and this source has none (the GSPS must carry the source's patient).


def test_png_folders_become_one_consistent_study_each_under_a_marked_pseudonym(tmp_path, resnet18_model):
    """PNG sources carry no patient: each source folder becomes one study of one clearly
    marked pseudonymous patient (stable for that folder), with one study date/time, a study
    description and increasing instance numbers; dcentvfy finds no error in the study. A
    patient the user gives is used instead."""
    from engine.exports.export import ExportOptions, export_dicom
    from engine.infer import Predictor

    a = tmp_path / "folder-a"
    b = tmp_path / "folder-b"
    pngs = sorted((XRAY / "images").glob("*.png"))[:3]
    for d, files in ((a, pngs[:2]), (b, pngs[2:])):
        d.mkdir()
        for f in files:
            shutil.copy(f, d / f.name)
    preds = Predictor(resnet18_model, device="cpu", enforce_scope=False).predict(sorted(a.glob("*.png")) + sorted(b.glob("*.png")))
    results = export_dicom(preds, tmp_path / "out")
    assert [r.error for r in results] == [None] * 3
    objs = [[pydicom.dcmread(f) for f in r.files.values()] for r in results]
    study_a = {ds.StudyInstanceUID for r in objs[:2] for ds in r}
    study_b = {ds.StudyInstanceUID for ds in objs[2]}
    assert len(study_a) == 1 and len(study_b) == 1 and study_a != study_b
    pa = {(str(ds.PatientID), str(ds.PatientName)) for r in objs[:2] for ds in r}
    pb = {(str(ds.PatientID), str(ds.PatientName)) for ds in objs[2]}
    assert len(pa) == 1 and len(pb) == 1 and pa != pb
    assert all(pid.startswith("MSFM-PSEUDO-") and "PSEUDONYM" in name for pid, name in pa | pb)
    for r in objs:
        assert len({(ds.StudyDate, ds.StudyTime) for ds in r}) == 1
        assert all(ds.StudyDescription for ds in r)
    assert [int(r[0].InstanceNumber) for r in objs[:2]] == [1, 2]  # the wrapped images of folder a
    out = subprocess.run(["dcentvfy", *map(str, (tmp_path / "out").glob("*.dcm"))], capture_output=True, text=True)
    assert [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")] == []
    again = export_dicom(preds[:1], tmp_path / "again")  # the same folder, another export: the same pseudonym
    assert str(pydicom.dcmread(again[0].files["image"]).PatientID) == next(iter(pa))[0]
    given = export_dicom(preds[:1], tmp_path / "given", ExportOptions(patient_id="H12345", patient_name="Doe^Jane"))
    image = pydicom.dcmread(given[0].files["image"])
    assert (image.PatientID, str(image.PatientName)) == ("H12345", "Doe^Jane")


def test_cli_names_the_patient_of_png_exports(tmp_path, resnet18_model):
    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    png = sorted((XRAY / "images").glob("*.png"))[0]
    r = msfm("predict", str(png), "--checkpoint", str(ck), "--device", "cpu", "--dicom-sr", str(tmp_path / "sr"),
             "--patient-id", "H12345", "--patient-name", "Doe^Jane", "--quiet")
    assert r.returncode == 0, r.stderr
    objs = [pydicom.dcmread(f) for f in (tmp_path / "sr").iterdir()]
    assert len(objs) == 3 and {(ds.PatientID, str(ds.PatientName)) for ds in objs} == {("H12345", "Doe^Jane")}


@pytest.mark.parametrize("anonymise", [False, True])
def test_sc_and_sr_in_different_folders_are_one_export_run(tmp_path, resnet18_model, anonymise):
    """`--dicom-sc A --dicom-sr B` on a PNG: wrapped once (the same instance in both
    folders), one study, one patient, also under --anonymise."""
    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    png = sorted((XRAY / "images").glob("*.png"))[0]
    r = msfm("predict", str(png), "--checkpoint", str(ck), "--device", "cpu", "--dicom-sc", str(tmp_path / "sc"), "--dicom-sr", str(tmp_path / "sr"),
             *(["--anonymise"] if anonymise else []), "--quiet")
    assert r.returncode == 0, r.stderr
    sc_dir = [pydicom.dcmread(f) for f in (tmp_path / "sc").iterdir()]
    sr_dir = [pydicom.dcmread(f) for f in (tmp_path / "sr").iterdir()]
    assert sorted(ds.Modality for ds in sc_dir) == ["OT", "OT"] and sorted(ds.Modality for ds in sr_dir) == ["OT", "PR", "SR"]
    everything = sc_dir + sr_dir
    assert len({ds.StudyInstanceUID for ds in everything}) == 1
    assert len({(ds.PatientID, str(ds.PatientName)) for ds in everything}) == 1
    images = [ds for ds in everything if ds.SeriesDescription.startswith("MSFM import")]
    assert len(images) == 2 and images[0].SOPInstanceUID == images[1].SOPInstanceUID
    sc = next(ds for ds in sc_dir if ds.get("BurnedInAnnotation") == "YES")
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == images[0].SOPInstanceUID


def test_cli_anonymise_leaves_no_path_or_source_uid_in_csv_and_json(tmp_path, resnet18_model):
    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    src = pydicom.dcmread(DICOM / "RG3_UNC.dcm", stop_before_pixels=True)
    r = msfm("predict", str(DICOM / "RG3_UNC.dcm"), "--checkpoint", str(ck), "--device", "cpu", "--anonymise",
             "--csv", str(tmp_path / "f.csv"), "--json", str(tmp_path / "f.json"), "--quiet")
    assert r.returncode == 0, r.stderr
    for f in ("f.csv", "f.json"):
        text = (tmp_path / f).read_text()
        for secret in ("RG3_UNC", str(DICOM), src.SOPInstanceUID, src.StudyInstanceUID, src.PatientID, str(src.PatientName)):
            assert secret not in text, (f, secret)
        assert "image-0001" in text


def test_csv_states_its_conventions_and_joins_the_dicom_of_the_same_run(tmp_path, resnet18_model):
    import csv
    import json

    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    r = msfm("predict", str(DICOM / "RG3_UNC.dcm"), str(EMRI), "--checkpoint", str(ck), "--device", "cpu", "--research-outside-intended-use",
             "--dicom-sr", str(tmp_path / "sr"), "--csv", str(tmp_path / "f.csv"), "--quiet")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    side = json.loads((tmp_path / "f.columns.json").read_text())
    assert set(side["columns"]) == set(rows[0]) and "0-based" in side["boxes"] and "xyxy" in side["boxes"]
    assert side["thresholds"] == [pytest.approx(float(rows[0]["threshold"]))]
    assert [row["frame"] for row in rows] == [""] + [str(i) for i in range(1, 11)]
    srs = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f) for f in (tmp_path / "sr").glob("*sr.dcm")}
    assert {row["sr_sop_instance_uid"] for row in rows} == set(srs)
    for row in rows:
        assert row["export_study_instance_uid"] == srs[row["sr_sop_instance_uid"]].StudyInstanceUID
    again = msfm("predict", str(DICOM / "RG3_UNC.dcm"), "--checkpoint", str(ck), "--device", "cpu", "--dicom-sr", str(tmp_path / "sr2"),
                 "--csv", str(tmp_path / "f.csv"), "--quiet")
    assert again.returncode != 0 and not (tmp_path / "sr2").exists()  # refused before any DICOM was written


def test_anonymised_export_leaves_no_identifier_at_any_depth_and_every_reference_resolves(tmp_path, preds):
    """Every tag of every object (sequences included) is searched for the sources'
    identifiers, UIDs, file names and paths; every referenced SOP instance is one the export
    wrote (the de-identified source goes with its derived objects)."""
    from engine.exports.export import ExportOptions, export_dicom

    chosen = [p for p in preds if Path(p.file).name in ("RG3_UNC.dcm", "highdicom_dx_image.dcm") or p.file.endswith(".png")]
    chosen += [p for p in preds if p.file == str(EMRI)][:2]
    results = export_dicom(chosen, tmp_path / "out", ExportOptions(anonymise=True))
    assert [r.error for r in results] == [None] * len(chosen)
    secrets = set()
    for p in chosen:
        secrets |= {Path(p.file).stem, str(Path(p.file).parent)}
        if p.file.endswith(".dcm"):
            src = pydicom.dcmread(p.file, stop_before_pixels=True)
            for elem in src.iterall():
                if elem.keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyID", "InstitutionName",
                                    "ReferringPhysicianName", "StudyDescription", "DeviceSerialNumber") or elem.VR == "UI" and elem.keyword.endswith("InstanceUID"):
                    if elem.value not in (None, "") and len(str(elem.value)) >= 4:
                        secrets.add(str(elem.value))
    written = [pydicom.dcmread(f) for f in sorted((tmp_path / "out").glob("*.dcm"))]
    sources = {str(pydicom.dcmread(r.files["source"]).SOPInstanceUID) for r in results if "source" in r.files}
    kinds = {k for r in results for k in r.files}
    assert "source" in kinds and {"sc", "sr", "gsps", "image"} <= kinds
    sop_uids = {str(ds.SOPInstanceUID) for ds in written}
    for ds in written:
        assert ds.PatientIdentityRemoved == "YES" and "PS3.15" in ds.DeidentificationMethod
        for elem in ds.iterall():
            if elem.VR in ("OB", "OW", "OF", "UN") or elem.keyword == "PixelData":
                continue
            text = str(elem.value)
            leaked = [s for s in secrets if s in text]
            assert not leaked, (ds.SOPClassUID.name, elem.keyword, leaked)
            if elem.keyword == "ReferencedSOPInstanceUID" and str(ds.SOPInstanceUID) not in sources:
                # (a source's own references to other images of its study are its own)
                assert text in sop_uids, (ds.SOPClassUID.name, "dangling reference")
        for keyword in ("ImageComments", "StudyDescription", "PatientAge", "DeviceSerialNumber", "InstitutionalDepartmentName"):
            assert not any(e.keyword == keyword for e in ds.iterall()), keyword


def test_sr_survives_a_dsr2xml_xml2dsr_round_trip(tmp_path, preds):
    """dcmtk reads every SR (a PNG's included: its patient is no longer blank) into XML and
    writes it back as the same document, the finding in standard codes intact."""
    from engine.exports.export import ExportOptions, export_dicom

    results = export_dicom(preds[:4], tmp_path, ExportOptions(sc=False, gsps=False))
    for i, res in enumerate(results):
        sr, xml, back = res.files["sr"], tmp_path / f"{i}.xml", tmp_path / f"{i}-back.dcm"
        for cmd in (["dsr2xml", str(sr), str(xml)], ["xml2dsr", str(xml), str(back)]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            assert done.returncode == 0 and not [ln for ln in done.stderr.splitlines() if ln.startswith(("E:", "F:"))], (cmd, done.stderr)

        def dump(path):
            out = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, check=True).stdout
            return [ln for ln in out.splitlines() if not ln.startswith("W:")]

        assert dump(back) == dump(sr)
        finding = "(263654008,SCT,\"Abnormal\")" if preds[i].label else "(17621005,SCT,\"Normal\")"
        assert any("\"Finding\")=" + finding in ln for ln in dump(back))
