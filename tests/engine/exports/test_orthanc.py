"""Orthanc as the PACS (issue 19): plain and anonymised exports of a DICOM radiograph, a PNG
and a multi-frame source are sent with the engine's C-STORE code to an Orthanc the test
starts in a network namespace of its own (loopback only: Orthanc's ports listen on every
interface, and that namespace has no other). Every object lands in the right patient, study
and series; every reference of an SR, GSPS and report resolves to an instance Orthanc
holds; nothing of the source's identity is left in what the anonymised export stored."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.conftest import DICOM, XRAY

ROOT = Path(__file__).resolve().parents[3]
CR = DICOM / "RG3_UNC.dcm"
MULTI = DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm"
PNG = sorted((XRAY / "images").glob("*.png"))[0]


@pytest.fixture(scope="module")
def preds(resnet18_model):
    from engine.infer import Predictor

    preds = Predictor(resnet18_model, device="cpu", enforce_scope=False).predict([CR, PNG, MULTI])
    return [p for p in preds if p.frame in (None, 0, 3)]


def export(preds, folder: Path, anonymise: bool) -> list[Path]:
    from engine.exports.export import ExportOptions, export_dicom
    from engine.exports.report import write_reports

    results = export_dicom(preds, folder, ExportOptions(anonymise=anonymise))
    assert [r.error for r in results] == [None] * len(preds)
    reports = write_reports(preds, folder / "pdf", results, anonymise=anonymise)
    assert [r.error for r in reports] == [None] * 3 and all(r.dicom for r in reports)
    files = [f for r in results for f in r.files.values()] + [r.dicom for r in reports]
    return sorted(set(files))


def run_in_namespace(job: dict, work: Path) -> dict:
    orthanc, unshare = shutil.which("Orthanc"), shutil.which("unshare")
    assert orthanc and unshare, "Orthanc (Debian package orthanc) and unshare are needed: scripts/bootstrap.sh installs Orthanc"
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.json").write_text(json.dumps({**job, "orthanc": orthanc, "work": str(work)}))
    ns = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    script = 'ip link set lo up && exec "$0" -m tests.engine.exports.orthanc_helper "$1"'
    done = subprocess.run([*ns, "sh", "-c", script, sys.executable, str(work / "job.json")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    log = (work / "orthanc.log").read_text() if (work / "orthanc.log").exists() else ""
    assert done.returncode == 0, done.stderr[-3000:] + log[-2000:]
    return json.loads((work / "result.json").read_text())


def referenced_uids(ds) -> set[str]:
    found = set()
    for elem in ds.iterall():
        if elem.keyword == "ReferencedSOPInstanceUID":
            found.add(str(elem.value))
    return found


def identifiers(path: Path) -> list[str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    values = [ds.get(k) for k in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                  "AccessionNumber", "StudyID", "InstitutionName", "ReferringPhysicianName")]
    return [str(v) for v in values if v is not None and len(str(v)) >= 3]


def test_orthanc_files_plain_and_anonymised_exports_where_they_belong(tmp_path, preds):
    plain = export(preds, tmp_path / "plain", anonymise=False)
    anon = export(preds, tmp_path / "anon", anonymise=True)
    # The PACS holds the DICOM sources the plain objects point at; the anonymised export
    # carries its own de-identified copies of them.
    job = {"batches": {"sources": [str(CR), str(MULTI)], "plain": list(map(str, plain)), "anon": list(map(str, anon))}}
    out = run_in_namespace(job, tmp_path / "orthanc")

    addresses = [line.split()[3] for line in out["addresses"]]
    assert addresses and all(a.startswith(("127.", "::1")) for a in addresses), out["addresses"]  # loopback only
    for name, rows in out["send"].items():
        assert all(ok for _, ok, _ in rows), (name, [r for r in rows if not r[1]])
    held = out["instances"]
    assert len(held) == 2 + len(plain) + len(anon)
    checked = 0

    for f in [CR, MULTI, *plain, *anon]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        got = held[str(ds.SOPInstanceUID)]
        assert got["patient"]["PatientID"] == str(ds.get("PatientID", "")), f
        assert got["study"]["StudyInstanceUID"] == str(ds.StudyInstanceUID), f
        assert got["series"]["SeriesInstanceUID"] == str(ds.SeriesInstanceUID), f
        if ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.104.1"):
            refs = referenced_uids(ds)
            assert refs and refs <= set(held), (f.name, refs - set(held))
            checked += 1
    assert checked == 2 * (4 + 4 + 3)  # plain and anonymised: 4 images with an SR and a GSPS each, 3 study reports

    def studies(files):
        return {str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files}

    cr_study = str(pydicom.dcmread(CR, stop_before_pixels=True).StudyInstanceUID)
    assert studies([f for f in plain if f.name.startswith("RG3_UNC")]) == {cr_study}  # the objects join the source's study
    png_objects = [f for f in plain if f.name.startswith(PNG.stem)]
    assert len(studies(png_objects)) == 1 and cr_study not in studies(png_objects)
    png_patient = {held[str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)]["patient"]["PatientID"] for f in png_objects}
    assert len(png_patient) == 1 and next(iter(png_patient)).startswith("MSFM-PSEUDO-")  # never a blank patient

    secrets = set(identifiers(CR) + identifiers(MULTI) + [PNG.name, PNG.stem, str(PNG.parent)] + list(png_patient))
    for f in anon:
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        stored = json.dumps(held[uid])
        leaked = [s for s in secrets if s in stored]
        assert not leaked, (f.name, leaked)
        assert held[uid]["tags"].get("PatientIdentityRemoved") == "YES", f.name
