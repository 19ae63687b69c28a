"""Checkpoints: atomic save, weights-only load, pickle refused, hash identity."""


import numpy as np
import pytest
import torch

from engine.errors import CheckpointError
from engine.infer import Predictor
from engine.model.checkpoint import file_sha256, load_checkpoint, save_checkpoint


def test_round_trip_keeps_predictions_and_hash(tmp_path, resnet18_model, xray_sample):
    path = tmp_path / "run" / "best.pt"
    sha = save_checkpoint(path, resnet18_model, {"threshold_source": "default", "metrics": {"kappa": 0.1}})
    assert sha == file_sha256(path) and len(sha) == 64
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left
    ck = load_checkpoint(path)
    assert ck.sha256 == sha and ck.meta["metrics"]["kappa"] == 0.1
    assert ck.config == resnet18_model.config
    a = Predictor(resnet18_model, device="cpu").predict(xray_sample[:2])
    pr = Predictor.from_checkpoint(path, device="cpu")
    b = pr.predict(xray_sample[:2])
    assert b[0].model.sha256 == sha
    for x, y in zip(a, b):
        assert x.probability == pytest.approx(y.probability, abs=1e-6)
        np.testing.assert_allclose(x.fused_box, y.fused_box)


class _Evil:
    """Unpickling it would run code: a checkpoint holding it needs pickle to load."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _pickle_needing_checkpoint(path):
    torch.save({"format": "msfm-checkpoint", "payload": _Evil()}, path)
    return path


def test_pickled_checkpoint_is_refused(tmp_path):
    path = _pickle_needing_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="needs pickle"):
        load_checkpoint(path)


def test_corrupt_and_foreign_files_are_refused(tmp_path, resnet18_model):
    good = tmp_path / "good.pt"
    save_checkpoint(good, resnet18_model)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(trunc)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an MSFM checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, resnet18_model, monkeypatch):
    path = tmp_path / "best.pt"
    sha = save_checkpoint(path, resnet18_model)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, resnet18_model, {"new": True})
    assert file_sha256(path) == sha
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_float16_weights_halve_the_file_and_load_into_float32(tmp_path, resnet18_model):
    from engine.model.checkpoint import describe_checkpoint

    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, resnet18_model, {"name": "x"})
    save_checkpoint(half, resnet18_model, {"name": "x", "weights_dtype": "float16"}, weights_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    ck = load_checkpoint(half)
    ref = resnet18_model.state_dict()
    for k, v in ck.model.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
            torch.testing.assert_close(v, ref[k].half().float(), rtol=0, atol=0)
        else:
            assert torch.equal(v, ref[k]), k  # integer buffers (BN step counters) are kept as they are
    d = describe_checkpoint(half)
    assert d.weights_dtype == "float16" and d.sha256 == file_sha256(half) and d.backbone == "resnet18"
    # No calibration stored: an uncalibrated stand-in at the checkpoint's threshold (tests/test_calibration.py).
    assert not d.calibration.calibrated and d.calibration.default.threshold == d.threshold


def test_a_plain_classifier_checkpoint_is_refused_for_analysis(tmp_path, resnet18_model):
    """Read as MSFM, a plain checkpoint's untrained object and part stages would join the
    ensemble (val AUC 0.816 / κ 0.399 instead of its own 0.845 / 0.588): refused, clearly."""
    from engine.errors import CheckpointError
    from engine.infer import Predictor
    from engine.model.checkpoint import save_checkpoint
    from tests.conftest import XRAY
    from tests.engine.test_cli import msfm

    ck = tmp_path / "plain.pt"
    save_checkpoint(ck, resnet18_model, {"name": "plain", "kind": "plain"})
    with pytest.raises(CheckpointError, match="plain-classifier checkpoint"):
        Predictor.from_checkpoint(ck, "cpu")
    png = sorted((XRAY / "images").glob("*.png"))[0]
    r = msfm("predict", str(png), "--checkpoint", str(ck), "--device", "cpu", "--quiet")
    assert r.returncode != 0 and "plain-classifier checkpoint" in r.stderr


def test_describe_reads_the_header_without_torch_and_refuses_what_torch_refuses(tmp_path, resnet18_model, capsys):
    """engine.model.described.describe names a model from the archive's header alone (the
    app's window before torch loads): the same description as torch's reader, for float32
    and float16 files and a resumable last.pt; a file needing pickle, a foreign or a cut
    file gets torch's refusal, and the pickled code never runs."""
    from engine.model.checkpoint import describe_checkpoint
    from engine.model.described import describe, read_header
    from engine.resources import DEFAULT_MODEL

    half, last = tmp_path / "half.pt", tmp_path / "last.pt"
    save_checkpoint(half, resnet18_model, {"name": "half", "weights_dtype": "float16"}, weights_dtype=torch.float16)
    opt = torch.optim.AdamW(resnet18_model.parameters())
    save_checkpoint(last, resnet18_model, {"name": "last"}, train_state={"optimizer": opt.state_dict(), "epoch": 3, "step": 17})
    for path in (DEFAULT_MODEL, half, last):
        read_header(path)  # no fallback: the header reader itself reads it
        assert describe(path) == describe_checkpoint(path), path

    with pytest.raises(CheckpointError, match="needs pickle"):
        describe(_pickle_needing_checkpoint(tmp_path / "evil.pt"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an MSFM checkpoint"):
        describe(foreign)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(half.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        describe(cut)
    assert "must never run" not in capsys.readouterr().out
