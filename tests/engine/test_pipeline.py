"""End-to-end inference on real radiographs, and the batched pipeline vs the per-image reference."""

import json

import numpy as np
import pytest
import torch

from engine.errors import ImageLoadError
from engine.infer import Predictor, predict
from engine.io import load_image, load_images
from reference.msfm import reference_predict
from tests.conftest import DICOM


def _inside(box, w, h, tol=1e-3):
    x0, y0, x1, y1 = box
    return -tol <= x0 < x1 <= w + tol and -tol <= y0 < y1 <= h + tol


def _check_prediction(p):
    assert len(p.windows) == 7
    assert [w.scale for w in sorted(p.windows, key=lambda w: (w.scale))].count(3) == 3
    scores = [w.score for w in p.windows]
    assert scores == sorted(scores, reverse=True)
    for w in p.windows:
        assert _inside(w.box, p.width, p.height)
        assert _inside(w.box, p.width, p.height) and w.box[0] >= p.object_box[0] - 1e-3 and w.box[2] <= p.object_box[2] + 1e-3
    assert _inside(p.object_box, p.width, p.height)
    assert _inside(p.fused_box, p.width, p.height)
    assert 0.0 <= p.probability <= 1.0 and p.label in (0, 1)
    g = 14
    assert p.maps.a.shape == (g, g) and p.maps.cfm.shape == (2, g, g) and p.maps.cam.shape == (g, g)
    # The finding (SPEC §3b): E over the whole image at 1/4 resolution, peak inside the lesion box.
    assert p.maps.evidence.shape == (-(-p.height // 4), -(-p.width // 4)) and p.maps.evidence.dtype == np.float32
    assert _inside(p.lesion_box, p.width, p.height)
    x0, y0, x1, y1 = p.lesion_box
    assert x0 <= p.peak[0] <= x1 and y0 <= p.peak[1] <= y1
    assert p.evidence_max == pytest.approx(float(p.maps.evidence.max()))


@pytest.mark.parametrize("fixture", ["resnet18_model", "lite0_model"])
def test_predict_real_radiographs_gives_7_windows_inside_each_image(request, fixture, xray_sample):
    model = request.getfixturevalue(fixture)
    preds = predict(xray_sample, model, device="cpu", batch_size=4)
    assert len(preds) == len(xray_sample)
    sizes = {(p.width, p.height) for p in preds}
    assert any(w != h for w, h in sizes)  # non-square originals are covered
    for path, p in zip(xray_sample, preds):
        assert p.file == str(path)
        im = load_image(path)
        assert (p.width, p.height) == (im.width, im.height)
        _check_prediction(p)
        js = p.to_json()
        assert set(js) >= {"file", "width", "height", "probability", "label", "stages", "object_box", "windows", "fused_box", "model",
                           "peak", "lesion_box", "evidence"}
        assert js["lesion_box"] == [round(v, 2) for v in p.lesion_box] and len(js["peak"]) == 2 and "max" in js["evidence"]
        json.dumps(js)


def test_batched_pipeline_matches_per_image_reference(resnet18_model, lite0_model, xray_sample):
    for model in (resnet18_model, lite0_model):
        images = [load_image(p) for p in xray_sample[:5]]
        preds = Predictor(model, device="cpu", batch_size=5).predict(images)
        for im, p in zip(images, preds):
            ref = reference_predict(model, im)
            assert p.probability == pytest.approx(ref["probability"], abs=1e-4)
            for k in ("main", "object", "parts"):
                assert p.stages[k] == pytest.approx(ref["stages"][k], abs=1e-4)
            np.testing.assert_allclose(p.object_box, ref["object_box"], atol=1e-3)
            got = np.array([w.box for w in p.windows])
            want = np.array([w[0] for w in ref["windows"]])
            np.testing.assert_allclose(got, want, atol=1e-3)
            assert [w.scale for w in p.windows] == [w[2] for w in ref["windows"]]
            np.testing.assert_allclose(p.fused_box, ref["fused_box"], atol=1e-3)
            np.testing.assert_allclose(p.maps.a, ref["a"], rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(p.maps.fw, ref["fw"], rtol=1e-4, atol=1e-3)
            _check_evidence_matches(p, ref)


def _check_evidence_matches(p, ref):
    """E, peak and lesion box of the batched engine vs the reference's independent build."""
    e, e_ref = p.maps.evidence, ref["evidence"]
    assert e.shape == e_ref.shape
    he, we = e.shape
    cw, ch = p.width / we, p.height / he
    scale = max(1.0, float(np.abs(e_ref).max()))
    # Coverage ties on a window edge may flip a cell between two maps: allow a few such cells.
    close = np.abs(e - e_ref) <= 1e-3 * scale
    assert close.mean() >= 0.995, f"E differs on {100 * (1 - close.mean()):.2f} % of cells"
    # Peak within one cell, unless the reference has a near-tie there (then the engine's peak
    # must be a maximum of the reference's E too).
    near = abs(p.peak[0] - ref["peak"][0]) <= cw + 1e-6 and abs(p.peak[1] - ref["peak"][1]) <= ch + 1e-6
    if not near:
        i, j = int(p.peak[1] // ch), int(p.peak[0] // cw)
        assert e_ref[i, j] >= e_ref.max() - 1e-3 * scale, (p.peak, ref["peak"])
    else:
        got, want = np.array(p.lesion_box), np.array(ref["lesion_box"])
        tol = 2 * np.array([cw, ch, cw, ch]) + 1e-6
        assert (np.abs(got - want) <= tol).all(), (p.lesion_box, ref["lesion_box"])


def test_results_do_not_depend_on_batch_composition(resnet18_model, xray_sample):
    images = [load_image(p) for p in xray_sample[:6]]
    one = Predictor(resnet18_model, device="cpu", batch_size=1).predict(images)
    many = Predictor(resnet18_model, device="cpu", batch_size=6).predict(images[::-1])[::-1]
    for a, b in zip(one, many):
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
        np.testing.assert_allclose(a.fused_box, b.fused_box, atol=1e-3)


def test_predict_on_dicom_frames_and_errors_are_reported(resnet18_model):
    # The DX (a dog's thorax) and the multi-frame MR are outside the model's intended use
    # (tests/test_scope.py); the research override predicts them, to test the plumbing.
    pr = Predictor(resnet18_model, device="cpu", batch_size=4, enforce_scope=False)
    inputs = [DICOM / "RG3_JLSL.dcm", DICOM / "RG3_JPLY.dcm", DICOM / "pydicom_test-SR.dcm", DICOM / "highdicom_dx_image.dcm"]
    preds, errors = [], []
    for step in pr.iter_predict(inputs):
        preds += step.predictions
        errors += step.errors
        assert step.total == 4 and step.done <= 4
    assert [p.file for p in preds] == [str(inputs[0]), str(inputs[3])]
    assert {e.path for e in errors} == {str(inputs[1]), str(inputs[2])}
    big = preds[0]
    assert (big.width, big.height) == (1760, 1760) and big.meta["SOPInstanceUID"]
    _check_prediction(big)
    with pytest.raises(ImageLoadError, match="no pixel data"):
        pr.predict([DICOM / "pydicom_test-SR.dcm"])
    frames = load_images(DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm")
    mf = pr.predict(DICOM / "pydicom-data_emri_small_jpeg_ls_lossless.dcm")
    assert len(mf) == len(frames) == 10 and [p.frame for p in mf] == list(range(10))


def test_crop_from_source_gives_boxes_in_original_pixels(xray_sample):
    import warnings

    from engine.config import ModelConfig
    from engine.model.msfm import MSFM

    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MSFM(ModelConfig(backbone="resnet18", crop_from="source")).eval()
    preds = predict([DICOM / "RG2_J2KI.dcm", xray_sample[0]], model, device="cpu")
    for p in preds:
        _check_prediction(p)


def test_mixed_precision_switch_leaves_cpu_results_unchanged(resnet18_model, xray_sample):
    """AMP is a GPU path: on the CPU the predictor must give float32 results, identical
    with the switch on or off (the machine's CPU has no fast bf16)."""
    from engine.accel import amp_context

    images = [load_image(p) for p in xray_sample[:2]]
    on = Predictor(resnet18_model, device="cpu", amp=True).predict(images)
    off = Predictor(resnet18_model, device="cpu", amp=False).predict(images)
    assert [p.probability for p in on] == [p.probability for p in off]
    assert all(p.maps.a.dtype == np.float32 for p in on)
    assert amp_context(torch.device("cpu"))[1] is None
