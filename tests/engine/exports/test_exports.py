"""Exports (SPEC §7): DICOM SC/SR/GSPS from DICOM and PNG sources checked with pydicom and
dciodvfy, anonymisation, no overwrite, all-or-nothing writes, CSV, and a real storage SCP
(dcmtk storescp on 127.0.0.1) receiving exactly what was sent."""

import numpy as np
import pydicom
import pytest

from tests.conftest import DICOM, XRAY, dataset_bytes, dciodvfy_errors

SOURCES = ["RG3_UNC.dcm", "highdicom_dx_image.dcm", "nested_extensionless/77654033/CR1/6154"]


@pytest.fixture(scope="module")
def preds(resnet18_model):
    """Predictions of varied sources. The DX (a dog's thorax) and the 16 × 16 CR (C-spine)
    are outside the model's intended use; they are predicted under the research override
    because their headers (MONOCHROME1 8-bit DX, a tiny CR) exercise the DICOM writers."""
    from engine.infer import Predictor

    files = [DICOM / s for s in SOURCES] + [sorted((XRAY / "images").glob("*.png"))[0]]
    preds = Predictor(resnet18_model, device="cpu", enforce_scope=False).predict(files)
    assert [p.outside_intended_use is not None for p in preds] == [False, True, True, False]
    return preds


def flatten(items) -> list:
    out = []
    for it in items:
        out.append(it)
        out += flatten(it.get("ContentSequence", []))
    return out


def scoord(sr) -> np.ndarray:
    def walk(items):
        for it in items:
            if it.get("ValueType") == "SCOORD":
                return it
            found = walk(it.get("ContentSequence", []))
            if found is not None:
                return found

    item = walk(sr.ContentSequence)
    return np.asarray(item.GraphicData, dtype=float).reshape(-1, 2), item.ContentSequence[0].ReferencedSOPSequence[0]


def test_dicom_sources_give_conformant_linked_sc_sr_gsps(tmp_path, preds):
    from engine.exports.export import ExportOptions, export_dicom

    results = export_dicom(preds[:3], tmp_path, ExportOptions())
    assert [r.error for r in results] == [None, None, None]
    for pred, res in zip(preds, results):
        src = pydicom.dcmread(pred.file, stop_before_pixels=True)
        assert set(res.files) == {"sc", "sr", "gsps"}
        for f in res.files.values():
            assert dciodvfy_errors(f) == [], f
        sc, sr, pr = (pydicom.dcmread(res.files[k]) for k in ("sc", "sr", "gsps"))
        for ds in (sc, sr, pr):
            assert (ds.StudyInstanceUID, ds.PatientID) == (src.StudyInstanceUID, src.PatientID)
            assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
            assert pred.model.sha256[:12] in ds.SeriesDescription
        assert sc.BurnedInAnnotation == "YES" and list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert sc.PhotometricInterpretation == "RGB" and sc.pixel_array.shape == (src.Rows, src.Columns, 3)
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        poly, ref = scoord(sr)  # the first ROI: the lesion box, the finding
        x0, y0, x1, y1 = pred.lesion_box
        np.testing.assert_allclose(poly, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], atol=1e-3)
        assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
        items = flatten(sr.ContentSequence)
        rois = [np.asarray(i.GraphicData, dtype=float).reshape(-1, 2) for i in items if i.get("ValueType") == "SCOORD"]
        fx0, fy0, fx1, fy1 = pred.fused_box  # the region, as context
        assert len(rois) == 2 and np.allclose(rois[1], [[fx0, fy0], [fx1, fy0], [fx1, fy1], [fx0, fy1], [fx0, fy0]], atol=1e-3)
        ids = [str(i.get("TextValue", "")) for i in items if i.get("ValueType") == "TEXT"]
        assert "MSFM lesion box" in ids and "MSFM region (fused box)" in ids
        values = [float(i.MeasuredValueSequence[0].NumericValue) for i in items if i.get("ValueType") == "NUM"]
        assert values == [pytest.approx(pred.probability, abs=1e-6)]
        assert any(pred.model.sha256 in str(i.get("TextValue", "")) for i in items)
        label = [i.ConceptCodeSequence[0].CodeMeaning for i in items if i.get("ValueType") == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "121071"]
        result = "Abnormal" if pred.label else "Normal"
        assert sorted(label) == sorted([result, result, "Image Region"])  # lesion ROI's type and evaluation; the region's type
        assert pr.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        objects = [g for a in pr.GraphicAnnotationSequence for g in a.get("GraphicObjectSequence", [])]
        boxes = [np.asarray(g.GraphicData, dtype=float).reshape(-1, 2) for g in objects]
        assert len(boxes) == 3 + len(pred.windows)  # lesion box, peak, fused box, windows
        assert any(np.allclose(b, poly, atol=1e-3) for b in boxes)
        assert any(b.shape == (1, 2) and np.allclose(b[0], pred.peak, atol=1e-3) for b in boxes)
        assert "MSFM LESION" in [layer.GraphicLayer for layer in pr.GraphicLayerSequence]
    assert not list(DICOM.glob("*.msfm-*"))  # nothing written next to the sources


def test_png_source_is_wrapped_in_a_new_study_that_sr_and_gsps_reference(tmp_path, preds):
    from engine.exports.export import export_dicom

    (res,) = export_dicom(preds[3:], tmp_path)
    assert res.error is None and set(res.files) == {"image", "sc", "sr", "gsps"}
    image = pydicom.dcmread(res.files["image"])
    assert image.PhotometricInterpretation == "MONOCHROME2" and (image.Rows, image.Columns) == (preds[3].height, preds[3].width)
    png = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(preds[3].file).convert("L"))
    np.testing.assert_array_equal(image.pixel_array, png)  # lossless
    sc, sr, pr = (pydicom.dcmread(res.files[k]) for k in ("sc", "sr", "gsps"))
    assert {sc.StudyInstanceUID, sr.StudyInstanceUID, pr.StudyInstanceUID} == {image.StudyInstanceUID}
    assert scoord(sr)[1].ReferencedSOPInstanceUID == image.SOPInstanceUID == sc.SourceImageSequence[0].ReferencedSOPInstanceUID
    for f in res.files.values():
        assert dciodvfy_errors(f) == [], f


def test_anonymised_export_keeps_links_and_drops_identity(tmp_path, preds):
    from engine.exports.export import ExportOptions, export_dicom

    results = export_dicom(preds[:3], tmp_path, ExportOptions(anonymise=True))
    for pred, res in zip(preds, results):
        assert res.error is None
        src = pydicom.dcmread(pred.file, stop_before_pixels=True)
        secrets = [str(v) for v in (src.get("PatientName"), src.get("PatientID"), src.get("PatientBirthDate"), src.get("AccessionNumber")) if v]
        assert secrets
        sc, sr, pr = (pydicom.dcmread(res.files[k]) for k in ("sc", "sr", "gsps"))
        for kind, f in res.files.items():
            data, ds = f.read_bytes(), pydicom.dcmread(f)
            assert not [s for s in secrets if len(s) >= 4 and s.encode() in data], (kind, secrets)  # nowhere in the file
            for key in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
                assert not src.get(key) or str(ds.get(key, "")) != str(src.get(key)), (kind, key)
            assert f.name == f"{kind}-{pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID}.dcm"  # no source name in it
            # The de-identified source keeps the original's own conformance errors, and adds none.
            allowed = set(dciodvfy_errors(pred.file)) if kind == "source" else set()
            assert set(dciodvfy_errors(f)) <= allowed, f
        ref_uid = sc.SourceImageSequence[0].ReferencedSOPInstanceUID
        assert ref_uid != src.SOPInstanceUID  # pseudonymised...
        assert scoord(sr)[1].ReferencedSOPInstanceUID == ref_uid  # ...consistently across SC, SR and GSPS
        assert pr.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == ref_uid
        assert sc.StudyInstanceUID == sr.StudyInstanceUID == pr.StudyInstanceUID != src.StudyInstanceUID
        assert sc.PatientID == sr.PatientID == pr.PatientID


def test_exports_never_overwrite_and_a_failure_leaves_no_file(tmp_path, preds, monkeypatch):
    import engine.exports.export as ex

    first = ex.export_dicom(preds[:1], tmp_path)[0]
    before = {p: p.read_bytes() for p in first.files.values()}
    second = ex.export_dicom(preds[:1], tmp_path)[0]
    assert all(p.exists() and p.read_bytes() == b for p, b in before.items())  # untouched
    assert set(second.files.values()).isdisjoint(before) and all("-1" in p.name for p in second.files.values())

    real = ex._writer

    def failing(ds):
        if ds.Modality == "PR":  # the last object of the group fails mid-write
            def w(fh):
                fh.write(b"half a file")
                raise OSError(28, "No space left on device")
            return w
        return real(ds)

    monkeypatch.setattr(ex, "_writer", failing)
    out = tmp_path / "partial"
    (res,) = ex.export_dicom(preds[:1], out)
    assert res.error and "No space left on device" in res.error and res.files == {}
    assert list(out.iterdir()) == []  # neither the SC/SR written before it nor a .partial


def test_csv_columns_and_no_overwrite(tmp_path, preds):
    import csv

    from engine.exports.csvout import CSV_FIELDS, write_csv

    path = write_csv(preds, tmp_path / "findings.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == CSV_FIELDS and len(rows) == len(preds)
    assert rows[0]["sop_instance_uid"] == pydicom.dcmread(preds[0].file, stop_before_pixels=True).SOPInstanceUID
    assert float(rows[0]["fused_x1"]) == pytest.approx(preds[0].fused_box[2], abs=0.01) and rows[0]["time"]
    assert float(rows[0]["lesion_x0"]) == pytest.approx(preds[0].lesion_box[0], abs=0.01)
    assert (float(rows[0]["peak_x"]), float(rows[0]["peak_y"])) == pytest.approx(preds[0].peak, abs=0.01)
    with pytest.raises(FileExistsError):
        write_csv(preds, path)
    anon = list(csv.DictReader(write_csv(preds, tmp_path / "anon.csv", anonymise=True).open()))
    assert [r["file"] for r in anon] == [f"image-{i:04d}" for i in range(1, len(preds) + 1)] and not any(r["sop_instance_uid"] for r in anon)
    assert "RG3_UNC" not in (tmp_path / "anon.csv").read_text()


def test_csv_rows_for_out_of_scope_images_and_research_marks(tmp_path, preds):
    import csv

    from engine.exports.csvout import CSV_FIELDS, write_csv
    from engine.io import load_images
    from engine.scope import OutOfScope, check_scope

    assert CSV_FIELDS[-12:-9] == ["patient_id", "study_instance_uid", "intended_use"]  # added at the end; the rest unchanged
    refused = [OutOfScope.of(im, check_scope(im)) for im in load_images(DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm")[:2]]
    refused.append(OutOfScope.of(load_images(DICOM / "RG1_J2KI.dcm")[0], check_scope(load_images(DICOM / "RG1_J2KI.dcm")[0])))
    rows = list(csv.DictReader(write_csv(preds, tmp_path / "f.csv", out_of_scope=refused).open()))
    assert len(rows) == len(preds) + 3
    ok, dx, tiny, png = rows[:4]
    assert ok["intended_use"] == "" and png["intended_use"] == "" and ok["label"] in ("0", "1")
    assert ok["patient_id"] == pydicom.dcmread(preds[0].file, stop_before_pixels=True).PatientID and ok["study_instance_uid"]
    for row, pred in ((dx, preds[1]), (tiny, preds[2])):  # predicted under the override: labelled, and marked
        assert row["label"] in ("0", "1") and row["probability"]
        assert row["intended_use"] == f"outside the model's intended use: {pred.outside_intended_use}; analysed anyway for research use only"
    mr0, mr1, chest = rows[4:]
    assert (mr0["frame"], mr1["frame"], chest["frame"]) == ("1", "2", "")  # 1-based, as DICOM counts frames
    assert mr0["intended_use"] == "outside the model's intended use: modality MR: the model reads radiographs (CR, DX, DR, RF)"
    assert chest["intended_use"].startswith("outside the model's intended use: body part CHEST")
    for row in (mr0, mr1, chest):
        empty = ["probability", "label", "p_main", "p_object", "p_parts", "model_sha256"] + [c for c in CSV_FIELDS if c.startswith(("object_", "fused_"))]
        assert all(row[c] == "" for c in empty), row
        assert row["sop_instance_uid"] and row["study_instance_uid"] and row["time"]
    assert chest["patient_id"] == pydicom.dcmread(DICOM / "RG1_J2KI.dcm", stop_before_pixels=True).PatientID != ""
    assert (chest["width"], chest["height"]) == ("1841", "1955")
    anon = list(csv.DictReader(write_csv(preds, tmp_path / "a.csv", anonymise=True, out_of_scope=refused).open()))
    assert [r["file"] for r in anon] == [f"image-{i:04d}" for i in range(1, len(rows) + 1)]
    assert not any(r[c] for r in anon for c in ("sop_instance_uid", "patient_id", "study_instance_uid"))
    assert anon[-1]["intended_use"] == chest["intended_use"]


def test_research_predictions_carry_the_mark_in_overlays_and_the_secondary_capture(tmp_path, preds):
    import cv2

    from engine.exports.burn import RESEARCH_COLOUR, render_overlay, save_overlay
    from engine.exports.export import ExportOptions, export_dicom
    from engine.io import load_image

    pred = preds[1]  # the dog's thorax, predicted under the override
    pixels = load_image(pred.file).pixels
    marked = render_overlay(pred, pixels)
    plain = render_overlay(__import__("dataclasses").replace(pred, outside_intended_use=None), pixels)
    diff = np.any(marked != plain, axis=2)
    assert diff.any() and np.argwhere(diff)[:, 0].max() < pred.height // 2  # burned in, under the label
    amber = np.all(np.abs(marked.astype(int) - RESEARCH_COLOUR) < 40, axis=2)
    assert amber.sum() > 20
    assert save_overlay(pred, tmp_path / "ov", pixels).name == "highdicom_dx_image_msfm_research-use-only.png"
    assert save_overlay(preds[0], tmp_path / "ov").name == "RG3_UNC_msfm.png"
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "ov" / "highdicom_dx_image_msfm_research-use-only.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, marked)
    (res,) = export_dicom([pred], tmp_path / "sc", ExportOptions(sc=True, sr=False, gsps=False))
    assert res.error is None
    np.testing.assert_array_equal(pydicom.dcmread(res.files["sc"]).pixel_array, marked)


def test_pacs_echo_and_send_arrive_byte_for_byte(tmp_path, preds, storescp):
    from engine.exports.export import export_dicom
    from engine.exports.pacs import PacsConfig, echo, send
    from tests.conftest import free_port

    port, received = storescp
    cfg = PacsConfig("TESTPACS", "127.0.0.1", port)
    ok, msg = echo(cfg)
    assert ok, msg
    (res,) = export_dicom(preds[:1], tmp_path / "out")
    files = [res.files[k] for k in ("sc", "sr", "gsps")]
    results = send(files, cfg)
    assert [r.ok for r in results] == [True] * 3 and [r.status for r in results] == [0] * 3
    got = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in received.iterdir()}
    for f in files:
        sent = pydicom.dcmread(f, stop_before_pixels=True)
        assert dataset_bytes(got[sent.SOPInstanceUID]) == dataset_bytes(f)
    closed = PacsConfig("TESTPACS", "127.0.0.1", free_port(), timeout=3)
    ok, msg = echo(closed)
    assert not ok and "127.0.0.1" in msg
    assert [r.ok for r in send(files[:1], closed)] == [False]


def test_cli_predict_writes_dicom_and_csv(tmp_path, resnet18_model):
    from engine.model.checkpoint import save_checkpoint
    from tests.engine.test_cli import msfm

    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "MSFM-test"})
    r = msfm("predict", str(DICOM / "RG3_UNC.dcm"), "--checkpoint", str(ck), "--device", "cpu", "--dicom-sc", str(tmp_path / "sc"),
             "--dicom-sr", str(tmp_path / "sr"), "--csv", str(tmp_path / "f.csv"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "sc").iterdir()] == ["RG3_UNC.msfm-sc.dcm"]
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["RG3_UNC.msfm-gsps.dcm", "RG3_UNC.msfm-sr.dcm"]
    again = msfm("predict", str(DICOM / "RG3_UNC.dcm"), "--checkpoint", str(ck), "--device", "cpu", "--csv", str(tmp_path / "f.csv"), "--quiet")
    assert again.returncode != 0 and "never overwrite" in again.stderr


def test_burned_in_evidence_follows_the_viewer_scale_and_verdict(preds):
    """The SC shows what the viewer shows: maps on the model's fixed scale (a map far
    below it leaves the radiograph untinted), and a normal result toned down."""
    from dataclasses import replace

    from engine.exports.burn import TONED_DOWN, render_overlay
    from engine.io import load_image
    from engine.model.calibration import Calibration, OperatingPoint

    p = next(q for q in preds if q.file.endswith(".png"))
    pixels = load_image(p.file).pixels
    grey = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)

    def cal(threshold: float, scale) -> Calibration:
        op = OperatingPoint("default", threshold, 0.8, 0.8)
        return Calibration("test", 10, 5, 5, op, replace(op, name="sensitive"), replace(op, name="specific"), (threshold - 0.01, threshold + 0.01),
                           0.2, scale, True)

    m = p.maps.cam
    far = {"cam": (float(m.max()) * 10 + 10, float(m.max()) * 20 + 20)}  # every cell below the scale
    flat = render_overlay(p, pixels, layers=("cam",), calibration=cal(0.0, far))
    assert np.array_equal(flat[..., 0], grey)  # transparent: no tint at all
    own = render_overlay(p, pixels, layers=("cam",), calibration=cal(0.0, None))
    assert np.abs(own.astype(int) - grey[..., None]).max() > 50  # on its own range the peak is drawn
    normal = render_overlay(p, pixels, layers=("cam", "fused"), calibration=cal(1.0, None))
    abnormal = render_overlay(p, pixels, layers=("cam", "fused"), calibration=cal(0.0, None))
    tint = lambda im: np.abs(im.astype(int) - grey[..., None]).mean()  # noqa: E731
    assert tint(normal) < 0.5 * tint(abnormal)
    x0, y0 = (int(round(v)) for v in p.fused_box[:2])
    assert tuple(normal[y0, x0]) == TONED_DOWN and tuple(abnormal[y0, x0]) == (255, 255, 255)
