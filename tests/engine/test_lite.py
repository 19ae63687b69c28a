"""The torch-free predictor (engine/lite): the PyTorch predictor's findings on real
radiographs and DICOM, for the shipped model and for the inference options of SPEC §3b;
its operators against torchvision's; its cache refused when stale, damaged or incomplete;
and a process that analyses with it never imports torch."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.lite import ops
from engine.model import ort
from tests.conftest import DICOM, XRAY

pytestmark = pytest.mark.skipif(not ort.available(), reason="onnxruntime/onnx not installed (scripts/bootstrap.sh installs them)")


def _box_diff(a, b) -> float:
    return max(abs(float(x) - float(y)) for x, y in zip(a, b))


def _val_images(n_each: int = 3):
    from engine.io import load_image

    rows = [r for r in csv.DictReader(open(XRAY / "labels.csv")) if r["split"] == "val"]
    files = [r["file"] for r in rows if r["label"] == "1"][:n_each] + [r["file"] for r in rows if r["label"] == "0"][:n_each]
    return [load_image(XRAY / "images" / f) for f in files] + [load_image(DICOM / "RG3_UNC.dcm")]


def _assert_same_findings(reference, lite) -> None:
    assert len(reference) == len(lite)
    for a, b in zip(reference, lite):
        assert (a.file, a.frame, a.width, a.height) == (b.file, b.frame, b.width, b.height)
        assert a.label == b.label and abs(a.probability - b.probability) < 1e-4, a.file
        assert all(abs(a.stages[k] - b.stages[k]) < 1e-4 for k in a.stages), a.file
        for name in ("object_box", "fused_box", "lesion_box", "peak"):
            assert _box_diff(getattr(a, name), getattr(b, name)) <= 1.0, (a.file, name)
        assert [w.scale for w in a.windows] == [w.scale for w in b.windows], a.file
        assert all(_box_diff(w.box, v.box) <= 1.0 for w, v in zip(a.windows, b.windows)), a.file
        assert a.object_box_is_default == b.object_box_is_default
        assert a.maps.evidence.shape == b.maps.evidence.shape and np.abs(a.maps.evidence - b.maps.evidence).max() < 1e-2
        assert np.allclose(a.maps.cfm, b.maps.cfm, atol=1e-3) and np.allclose(a.maps.fw, b.maps.fw, rtol=1e-4, atol=1e-3)
        assert a.model == b.model


VARIANTS = {
    "shipped": {},
    # Crop from the full-resolution source (adaptive sampling), bag pooling, product ranking.
    "source-lse-product": {"crop_from": "source", "parts_pool": "lse", "window_score": "product"},
    # Lesion-sized windows ranked on the class map, object and parts stages at output stride 16.
    "lesion-class-os16": {"lesion_windows": True, "lesion_window_score": "class", "output_stride": 16},
    # The object stage at stride 16, the parts stage at 32 (separate strides).
    "object-os16-parts-os32": {"output_stride": 16, "part_output_stride": 32},
    # Object and part cells pooled by the smooth maximum of the class map (the bias from the manifest).
    "cell-lse": {"cell_pool": "lse", "cell_pool_r": 1.0},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lite_predictor_gives_the_pytorch_findings(variant, tmp_path, monkeypatch):
    from engine.infer import Predictor
    from engine.lite import LitePredictor
    from engine.model.checkpoint import load_checkpoint, save_checkpoint
    from engine.resources import DEFAULT_MODEL

    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    path = DEFAULT_MODEL
    if VARIANTS[variant]:
        ck = load_checkpoint(DEFAULT_MODEL)
        path = tmp_path / f"{variant}.pt"
        save_checkpoint(path, ck.model, ck.meta, config=ck.config.with_(**VARIANTS[variant]))
    assert LitePredictor.open(path) is None  # nothing cached yet: the app builds the PyTorch predictor
    onnx = Predictor.from_checkpoint(path, "cpu", enforce_scope=False)  # caches the graphs and the manifest
    lite = LitePredictor.open(path, enforce_scope=False)
    assert onnx.runtime == "onnx" and lite is not None and lite.runtime == "lite"
    assert lite.info == onnx.info and lite.calibration == onnx.calibration and lite.config == onnx.config
    images = _val_images(3 if variant == "shipped" else 2)
    reference = Predictor.from_checkpoint(path, "cpu", runtime="torch", enforce_scope=False).predict(images)
    _assert_same_findings(reference, lite.predict(images))


def test_lite_predictor_checks_the_intended_use_and_reports_unreadable_files(tmp_path, monkeypatch):
    from engine.infer import Predictor
    from engine.lite import LitePredictor
    from engine.resources import DEFAULT_MODEL

    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    Predictor.from_checkpoint(DEFAULT_MODEL, "cpu")
    lite = LitePredictor.open(DEFAULT_MODEL)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    ct = DICOM / "pydicom_CT_small.dcm"  # a CT slice: outside the intended use (radiographs)
    steps = list(lite.iter_predict([XRAY / "images" / "IMG0000188.png", bad, ct]))
    preds = [p for s in steps for p in s.predictions]
    errors = [e for s in steps for e in s.errors]
    refused = [r for s in steps for r in s.out_of_scope]
    assert [p.file for p in preds] == [str(XRAY / "images" / "IMG0000188.png")]
    assert len(errors) == 1 and errors[0].path == str(bad) and errors[0].reason
    assert len(refused) == 1 and refused[0].reason


def test_crop_resize_crops_what_roi_align_crops():
    from torchvision.ops import roi_align

    from engine.io import load_image

    image = np.asarray(load_image(XRAY / "images" / "IMG0000188.png").pixels, np.float32)
    h, w = image.shape
    boxes = [(0, 0, w, h), (w * 0.3, h * 0.2, w * 0.6, h * 0.5), (-10.0, h - 40.0, 60.0, h + 5.0), (5.5, 7.25, 9.0, h * 0.9)]
    for sampling_ratio in (0, 1, 2):
        for out in ((320, 320), (64, 48)):
            rois = torch.tensor([[0.0, *b] for b in boxes])
            want = roi_align(torch.from_numpy(image)[None, None], rois, out, 1.0, sampling_ratio, aligned=True)[:, 0].numpy()
            got = np.stack([ops.crop_resize(image, np.array(b), *out, sampling_ratio=sampling_ratio) for b in boxes])
            assert got.shape == want.shape and np.abs(got - want).max() < 1e-4, (sampling_ratio, out)


def test_nms_and_window_means_keep_torchvisions_windows_in_its_order():
    from torchvision.ops import batched_nms

    from engine.model.windows import WindowGeometry, select_windows

    scales = (((3, 3), (2, 4), (4, 2)), ((5, 5), (4, 6), (6, 4)), ((7, 7),))
    geometry = WindowGeometry.build(10, scales)
    rng = np.random.default_rng(0)
    real = rng.random((1, 10, 10)).astype(np.float32)
    flat = np.zeros((1, 10, 10), np.float32)
    corner = np.zeros((1, 10, 10), np.float32)
    corner[0, :3, :3] = 1.0
    maps = np.concatenate([real, flat, corner])  # ties in the last two
    boxes, scale, sizes = ops.window_geometry(10, scales)
    assert np.array_equal(boxes, geometry.boxes.numpy()) and np.array_equal(scale, geometry.scale.numpy())
    scores = ops.window_means([maps] * 3, sizes)
    assert np.allclose(scores, geometry.scores(torch.from_numpy(maps)).numpy(), atol=1e-6)
    group = (np.arange(3)[:, None] * 3 + scale[None, :]).reshape(-1)
    flat_scores = geometry.scores(torch.from_numpy(maps)).reshape(-1)
    for iou in (0.25, 0.5, 0.7):
        want = batched_nms(geometry.boxes.repeat(3, 1), flat_scores, torch.from_numpy(group), iou).numpy()
        assert np.array_equal(ops.batched_nms(np.tile(boxes, (3, 1)), flat_scores.numpy(), group, iou), want), iou
        b1, s1, c1 = select_windows(torch.from_numpy(maps), geometry, (2, 2, 3), iou)
        b2, s2, c2 = ops.select_windows([maps] * 3, (boxes, scale, sizes), (2, 2, 3), iou)
        assert np.array_equal(b1.numpy(), b2) and np.allclose(s1.numpy(), s2, atol=1e-6) and np.array_equal(c1.numpy(), c2), iou
    assert ops.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5).size == 0


def test_the_cache_is_refused_when_stale_damaged_or_incomplete(tmp_path, monkeypatch, caplog):
    from engine.infer import Predictor
    from engine.lite import LitePredictor
    from engine.lite.cache import manifest_path, read_manifest, write_manifest
    from engine.model.checkpoint import load_checkpoint
    from engine.resources import DEFAULT_MODEL

    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "onnx"
    p = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu")
    sha = p.info.sha256
    manifest = manifest_path(cache, sha)
    good = manifest.read_text()
    assert LitePredictor.open(DEFAULT_MODEL) is not None

    other = tmp_path / "other.pt"  # another file (one byte of metadata differs): its own SHA-256, no manifest
    ck = load_checkpoint(DEFAULT_MODEL)
    from engine.model.checkpoint import save_checkpoint

    save_checkpoint(other, ck.model, {**ck.meta, "name": "another model"}, config=ck.config)
    assert LitePredictor.open(other) is None

    doc = json.loads(good)
    doc["sha256"] = "0" * 64  # a manifest that names another model
    manifest.write_text(json.dumps(doc))
    assert read_manifest(cache, sha) is None and LitePredictor.open(DEFAULT_MODEL) is None
    manifest.write_text(good[: len(good) // 2])  # cut short
    assert LitePredictor.open(DEFAULT_MODEL) is None and "ignoring" in caplog.text
    manifest.write_text(good)
    graph = cache / f"{sha}-os32.onnx"
    graph.write_bytes(b"not a graph")  # damaged: refused here, made again by the PyTorch predictor
    assert LitePredictor.open(DEFAULT_MODEL) is None and "unusable" in caplog.text
    Predictor.from_checkpoint(DEFAULT_MODEL, "cpu").predict([XRAY / "images" / "IMG0000188.png"])
    assert graph.stat().st_size > 1000 and LitePredictor.open(DEFAULT_MODEL) is not None
    graph.rename(cache / "moved.onnx")  # a graph missing
    assert LitePredictor.open(DEFAULT_MODEL) is None
    # FMA applied at inference needs its attention network, which is not exported: no manifest.
    cfg = ck.config.with_(fma=ck.config.fma.__class__(**{**ck.config.fma.__dict__, "train_only": False}))
    assert write_manifest(cache, "f" * 64, cfg, {}, None, np.zeros((2, 1280), np.float32)) is None
    # A cell-pooled model's manifest without the FC bias (as an older version wrote it) is stale.
    lse = ck.config.with_(cell_pool="lse")
    (cache / "moved.onnx").rename(graph)
    written = write_manifest(cache, sha, lse, ck.meta, None, np.zeros((2, 1280), np.float32), np.zeros(2, np.float32))
    assert written is not None and read_manifest(cache, sha) is not None
    doc = json.loads(written.read_text())
    doc.pop("fc_bias")
    written.write_text(json.dumps(doc))
    assert read_manifest(cache, sha) is None and "no FC bias" in caplog.text


_NO_TORCH = """
import importlib.abc, json, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm"):
            raise ImportError(f"{name} is not allowed in this process")
sys.meta_path.insert(0, _NoTorch())
from engine.lite import LitePredictor
from engine.resources import DEFAULT_MODEL
from engine.model.described import describe
info = describe(DEFAULT_MODEL)  # the window names the model first
lite = LitePredictor.open(DEFAULT_MODEL, enforce_scope=False)
preds = lite.predict(sys.argv[1:])
print(json.dumps({"sha256": info.sha256, "name": info.name, "predictions": [{"file": p.file, "p": p.probability, "box": p.fused_box, "lesion": p.lesion_box} for p in preds]}))
"""


def test_a_process_analyses_with_it_without_importing_torch(tmp_path, monkeypatch):
    from engine.infer import Predictor
    from engine.resources import DEFAULT_MODEL

    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    reference = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", runtime="torch", enforce_scope=False)
    Predictor.from_checkpoint(DEFAULT_MODEL, "cpu")  # the app's first use: caches graphs and manifest
    files = [str(XRAY / "images" / "IMG0000188.png"), str(DICOM / "RG3_UNC.dcm")]
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, *files], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, MSFM_CACHE_DIR=str(tmp_path / "cache")))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["sha256"], got["name"]) == (reference.info.sha256, reference.info.name)
    for want, g in zip(reference.predict(files), got["predictions"], strict=True):
        assert g["file"] == want.file and abs(g["p"] - want.probability) < 1e-4
        assert _box_diff(g["box"], want.fused_box) <= 1.0 and _box_diff(g["lesion"], want.lesion_box) <= 1.0


def test_a_batch_runs_in_lanes_with_the_single_image_findings_in_order(tmp_path, monkeypatch):
    """A batch is analysed side by side in lanes of their own sessions: the same findings,
    in the images' order, as one image at a time; a failing image stops every lane and its
    error reaches the caller."""
    from engine.infer import Predictor
    from engine.lite import LitePredictor
    from engine.lite import predictor as lite_module
    from engine.resources import DEFAULT_MODEL

    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    Predictor.from_checkpoint(DEFAULT_MODEL, "cpu")
    lite = LitePredictor.open(DEFAULT_MODEL, enforce_scope=False)
    lite.threads = 2
    images = _val_images(2)
    one_by_one = [p for im in images for p in lite.predict_batch([im])]
    # The main stage's graph and the object and part stages' (the shipped model's output stride).
    assert {k for k, _ in lite._sessions} == set(lite.model.graphs) and {lane for _, lane in lite._sessions} == {-1}
    side_by_side = lite.predict_batch(images)
    assert {lane for _, lane in lite._sessions} == {-1, 0, 1}  # the lanes opened sessions of their own
    _assert_same_findings(one_by_one, side_by_side)

    done: list[str] = []
    real = lite._predict_chunk

    def failing(chunk):
        if chunk[0] is images[2]:
            raise RuntimeError("decoder fault in image 3")
        out = real(chunk)
        done.append(out[0].file)
        return out

    monkeypatch.setattr(lite, "_predict_chunk", failing)
    with pytest.raises(RuntimeError, match="image 3"):
        lite.predict_batch(images)
    assert len(done) < len(images) - 1  # the lanes stopped: not every other image was analysed
    assert lite.lanes(1) == 1 and lite.lanes(len(images)) == lite_module.LANES
