"""The encoder through ONNX Runtime (engine/model/ort.py): the same findings as PyTorch on
real radiographs and DICOM, graphs exported once and cached by the model's SHA-256, a
damaged cache made again, and PyTorch still the path for training and gradients."""

import csv

import numpy as np
import pytest
import torch

from engine.model import ort
from tests.conftest import DICOM, XRAY

pytestmark = pytest.mark.skipif(not ort.available(), reason="onnxruntime/onnx not installed (scripts/bootstrap.sh installs them)")


def _box_diff(a, b) -> float:
    return max(abs(float(x) - float(y)) for x, y in zip(a, b))


def test_onnx_runtime_gives_the_same_findings_as_pytorch(tmp_path, monkeypatch):
    from engine.infer import Predictor
    from engine.io import load_image
    from engine.resources import DEFAULT_MODEL

    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    rows = [r for r in csv.DictReader(open(XRAY / "labels.csv")) if r["split"] == "val"]
    files = [XRAY / "images" / r["file"] for r in rows[:6] if r["label"] == "1"][:3] + [XRAY / "images" / r["file"] for r in rows[:12] if r["label"] == "0"][:3]
    images = [load_image(f) for f in files] + [load_image(DICOM / "RG3_UNC.dcm")]
    reference = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", runtime="torch", enforce_scope=False)
    fast = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", runtime="auto", enforce_scope=False)
    assert (reference.runtime, fast.runtime) == ("torch", "onnx")
    for a, b in zip(reference.predict(images), fast.predict(images)):
        assert a.label == b.label and abs(a.probability - b.probability) < 1e-4, a.file
        for name in ("object_box", "fused_box", "lesion_box"):
            assert _box_diff(getattr(a, name), getattr(b, name)) <= 1.0, (a.file, name)
        assert all(_box_diff(w.box, v.box) <= 1.0 for w, v in zip(a.windows, b.windows)), a.file
        assert np.abs(a.maps.evidence - b.maps.evidence).max() < 1e-2
    graphs = sorted(p.name for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert graphs == [f"{fast.info.sha256}-os32.onnx"] or graphs == sorted(f"{fast.info.sha256}-os{s}.onnx" for s in (16, 32))


def test_graphs_are_cached_by_sha_and_a_damaged_cache_is_made_again(tmp_path, resnet18_model):
    from engine.model.checkpoint import state_sha256

    key = state_sha256(resnet18_model)
    model = resnet18_model.eval()
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        ref_f, ref_l = model.backbone.forward_torch(x)
    runner = ort.OrtEncoder(model.backbone, key, tmp_path)
    f, logits = runner(x)
    assert torch.allclose(f, ref_f, atol=1e-3) and torch.allclose(logits, ref_l, atol=1e-4)
    path = runner.graph_path(32)
    assert path.is_file() and path.name == f"{key}-os32.onnx"
    stamp = path.stat().st_mtime_ns
    again = ort.OrtEncoder(model.backbone, key, tmp_path)
    again(x)
    assert path.stat().st_mtime_ns == stamp  # read from the cache, not exported again
    path.write_bytes(b"not a graph")
    f3, _ = ort.OrtEncoder(model.backbone, key, tmp_path)(x)
    assert torch.allclose(f3, ref_f, atol=1e-3) and path.stat().st_size > 1000


def test_training_and_gradients_stay_in_pytorch(tmp_path, resnet18_model):
    import copy

    model = copy.deepcopy(resnet18_model)
    ort.attach(model, "grad-test", tmp_path)
    x = torch.rand(1, 1, 96, 96, requires_grad=True)
    model.eval()
    f, logits = model.backbone(x)  # gradients enabled: PyTorch
    logits.sum().backward()
    assert x.grad is not None and not list(tmp_path.iterdir())
    model.train()
    with torch.no_grad():
        model.backbone(x)  # training mode: PyTorch
    assert not list(tmp_path.iterdir())


def test_the_desktop_exports_a_new_model_in_a_child_process(tmp_path, monkeypatch, resnet18_model):
    """With EXPORT_IN_CHILD (set by the desktop) the first use of a model exports its graph
    in a spawned process from the checkpoint file, and the results match PyTorch."""
    from engine.infer import Predictor
    from engine.io import load_image
    from engine.model.checkpoint import save_checkpoint

    monkeypatch.setattr(ort, "EXPORT_IN_CHILD", True)
    monkeypatch.setenv("MSFM_CACHE_DIR", str(tmp_path / "cache"))
    ck = tmp_path / "m.pt"
    save_checkpoint(ck, resnet18_model, {"name": "child-export"})
    image = load_image(sorted((XRAY / "images").glob("*.png"))[0])
    fast = Predictor.from_checkpoint(ck, "cpu")
    (p,) = fast.predict([image])
    (q,) = Predictor.from_checkpoint(ck, "cpu", runtime="torch").predict([image])
    assert fast.runtime == "onnx" and abs(p.probability - q.probability) < 1e-4 and p.label == q.label
    assert (tmp_path / "cache" / "onnx" / f"{fast.info.sha256}-os32.onnx").is_file()
