"""The training generator: events, checkpoints, cancel/resume, NaN stop, plain baseline."""

import json
import math
import warnings

import pytest
import torch

from engine.errors import MSFMError
from engine.model.checkpoint import load_checkpoint, state_sha256
from engine.train.events import BatchEnd, CheckpointSaved, EpochEnd, TrainFinished, TrainMessage, TrainStarted
from engine.train.loop import TrainingError, train
from engine.train.setup import TrainConfig
from tests.conftest import TINY_TRAIN

warnings.filterwarnings("ignore", message="no ImageNet weights")


def cfg_for(tiny_csv, out, **kw):
    base = dict(TINY_TRAIN, data=str(tiny_csv), out=str(out), epochs=1, checkpoint_every=0)
    base.update(kw)
    return TrainConfig(**base)


def test_events_checkpoints_and_validation(tiny_csv, tmp_path):
    events = list(train(cfg_for(tiny_csv, tmp_path / "run", epochs=2, warmup_epochs=1)))
    kinds = [type(e) for e in events]
    assert kinds[0] is TrainStarted and kinds[-1] is TrainFinished
    started = events[0]
    assert started.n_train == 12 and started.n_val == 8 and started.steps_per_epoch == 3
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert len(batches) == 6
    # Warm-up epoch: main-stage loss only; then all three stages (eq. 9).
    assert set(batches[0].losses) == {"main", "total"}
    assert set(batches[-1].losses) == {"main", "object", "parts", "total"}
    assert all(math.isfinite(b.losses["total"]) for b in batches)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.epoch for e in epochs] == [0, 1]
    v = epochs[-1].val
    for key in ("accuracy", "kappa", "auc", "f1_abnormal", "f1_normal", "jpe", "sensitivity", "specificity", "per_body_part", "localization"):
        assert key in v
    assert v["localization"]["n_images"] == 4
    saved = [e for e in events if isinstance(e, CheckpointSaved)]
    assert {e.kind for e in saved} == {"best", "last"}
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.meta["kind"] == "msfm" and best.meta["data"]["n_train"] == 12
    assert 0 < best.config.threshold < 1 and 0 < best.config.gamma <= 1
    assert len(best.meta["history"]) >= 1
    assert (tmp_path / "run" / "history.json").is_file()


def test_cancel_then_resume_equals_an_uninterrupted_run(tiny_csv, tmp_path):
    full = tmp_path / "full"
    for _ in train(cfg_for(tiny_csv, full, tune_threshold=False, tune_gamma=False)):
        pass
    part = tmp_path / "part"
    gen = train(cfg_for(tiny_csv, part, tune_threshold=False, tune_gamma=False))
    for ev in gen:
        if isinstance(ev, BatchEnd) and ev.step == 2:
            gen.close()  # what the desktop's Cancel does
            break
    state = load_checkpoint(part / "last.pt").train_state
    assert (state["epoch"], state["step"]) == (0, 2)
    events = list(train(cfg_for(tiny_csv, part, resume=True, tune_threshold=False, tune_gamma=False)))
    started = events[0]
    assert (started.start_epoch, started.start_step) == (0, 2)
    assert len([e for e in events if isinstance(e, BatchEnd)]) == 1
    a = load_checkpoint(full / "last.pt").model.state_dict()
    b = load_checkpoint(part / "last.pt").model.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_resume_without_a_run_is_a_clear_error(tiny_csv, tmp_path):
    with pytest.raises(TrainingError, match="no .*last.pt"):
        next(train(cfg_for(tiny_csv, tmp_path / "none", resume=True)))


def test_nan_loss_stops_with_a_message_and_keeps_the_checkpoint(tiny_csv, tmp_path):
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match="loss became"):
        for _ in train(cfg_for(tiny_csv, run, lr=1e30, loss="ce")):
            pass
    assert load_checkpoint(run / "last.pt").train_state is not None


def test_fine_tune_from_checkpoint_and_plain_baseline(tiny_csv, tmp_path):
    for _ in train(cfg_for(tiny_csv, tmp_path / "a", max_steps_per_epoch=1)):
        pass
    start = load_checkpoint(tmp_path / "a" / "best.pt")
    events = list(train(cfg_for(tiny_csv, tmp_path / "b", init=str(tmp_path / "a" / "best.pt"), max_steps_per_epoch=1)))
    assert isinstance(events[-1], TrainFinished)
    tuned = load_checkpoint(tmp_path / "b" / "last.pt")
    assert state_sha256(tuned.model) != state_sha256(start.model)
    # Its provenance names the file it continues, not the "random" a loaded backbone reports.
    assert tuned.meta["pretrained"] == f"msfm checkpoint best.pt (sha256 {start.sha256[:12]})"
    # The plain classifier trains the main stage only, without FMA.
    events = list(train(cfg_for(tiny_csv, tmp_path / "plain", model="plain", max_steps_per_epoch=2)))
    batches = [e for e in events if isinstance(e, BatchEnd)]
    assert all(set(b.losses) == {"main", "total"} for b in batches)
    plain = load_checkpoint(tmp_path / "plain" / "best.pt")
    assert plain.meta["kind"] == "plain" and not plain.config.fma.enabled


def test_plain_classifier_warm_starts_msfm(tiny_csv, tmp_path):
    """--init with a plain checkpoint builds the configured MSFM around its encoder + FC."""
    for _ in train(cfg_for(tiny_csv, tmp_path / "plain", model="plain", max_steps_per_epoch=1)):
        pass
    plain = load_checkpoint(tmp_path / "plain" / "best.pt")
    cfg = cfg_for(tiny_csv, tmp_path / "msfm", init=str(tmp_path / "plain" / "best.pt"), max_steps_per_epoch=1, part_size=96, fma=True)
    gen = train(cfg)
    started, first = next(gen), next(gen)
    assert isinstance(started, TrainStarted)
    start = load_checkpoint(tmp_path / "msfm" / "last.pt")  # the step-0 state, saved before the first step
    assert start.config.fma.enabled and start.config.part_size == 96  # MSFM's config, not the classifier's
    assert state_sha256(start.model.backbone) == state_sha256(plain.model.backbone)
    assert start.meta["pretrained"].startswith("plain classifier best.pt")
    events = [started, first, *gen]
    assert any(isinstance(e, BatchEnd) and set(e.losses) > {"main", "object"} for e in events)
    with pytest.raises(TrainingError, match="resnet18 classifier"):
        next(train(cfg_for(tiny_csv, tmp_path / "bad", init=str(tmp_path / "plain" / "best.pt"), backbone="resnet34")))


def test_bad_training_data_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("file,label\n")
    with pytest.raises(MSFMError):
        next(train(TrainConfig(data=str(tmp_path / "labels.csv"), out=str(tmp_path / "r"), **TINY_TRAIN)))


def test_train_output_stride_takes_the_steps_at_32_and_keeps_the_models_own(tiny_csv, tmp_path, monkeypatch):
    """Fine-tuning a stride-16 model with ``train_output_stride=32`` (what one-click
    fine-tuning does): the training steps run the object and part stages at 32, validation
    at 16, and the saved model is still a stride-16 model."""
    from engine.model.backbones import Backbone

    lite = dict(backbone="efficientnet_lite0")  # torchvision's BasicBlock cannot dilate (ResNet-18)
    for _ in train(cfg_for(tiny_csv, tmp_path / "a", max_steps_per_epoch=1, output_stride=16, **lite)):
        pass
    assert load_checkpoint(tmp_path / "a" / "best.pt").config.output_stride == 16
    seen: list[tuple[bool, int]] = []
    real = Backbone.forward

    def spy(self, x01, output_stride=32):
        seen.append((self.training, output_stride))
        return real(self, x01, output_stride)

    monkeypatch.setattr(Backbone, "forward", spy)
    events = list(train(cfg_for(tiny_csv, tmp_path / "b", init=str(tmp_path / "a" / "best.pt"), max_steps_per_epoch=2, train_output_stride=32, **lite)))
    assert isinstance(events[-1], TrainFinished)
    # Training: main, object and parts stages per step, all at 32; validation: main at 32, object and parts at 16.
    assert {s for training, s in seen if training} == {32} and len([1 for t, _ in seen if t]) == 2 * 3
    assert {s for training, s in seen if not training} == {32, 16}
    tuned = load_checkpoint(tmp_path / "b" / "best.pt")
    assert tuned.config.output_stride == 16 and tuned.meta["train_config"]["train_output_stride"] == 32
    with pytest.raises(MSFMError):
        TrainConfig(data="x", train_output_stride=8)


def test_init_continues_under_an_explicit_crop_from_and_keeps_its_own_otherwise(tiny_csv, tmp_path, monkeypatch):
    from engine.model.msfm import MSFM

    list(train(cfg_for(tiny_csv, tmp_path / "a", max_steps_per_epoch=1)))
    assert load_checkpoint(tmp_path / "a" / "best.pt").config.crop_from == "input"
    calls: list[bool] = []
    real = MSFM._crop_sources

    def spy(self, *args, **kwargs):
        calls.append(self.training)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MSFM, "_crop_sources", spy)
    list(train(cfg_for(tiny_csv, tmp_path / "b", init=str(tmp_path / "a" / "best.pt"), max_steps_per_epoch=1, crop_from="source")))
    tuned = load_checkpoint(tmp_path / "b" / "best.pt")
    assert tuned.config.crop_from == "source" and tuned.meta["train_config"]["crop_from"] == "source"
    assert True in calls  # the training step cut its crops from the full-resolution sources
    list(train(cfg_for(tiny_csv, tmp_path / "c", init=str(tmp_path / "b" / "best.pt"), max_steps_per_epoch=1)))
    assert load_checkpoint(tmp_path / "c" / "best.pt").config.crop_from == "source"
    assert TrainConfig(data="x").model_config().crop_from == "input"
    with pytest.raises(MSFMError):
        TrainConfig(data="x", crop_from="disk")


def test_time_budget_plans_the_epochs_that_fit():
    cfg = TrainConfig(data="x", epochs=10, time_budget_s=100.0)
    assert cfg.plan_epochs(1, elapsed_s=20.0, last_epoch_s=20.0) == 5
    assert cfg.plan_epochs(1, elapsed_s=20.0, last_epoch_s=5.0) == 10  # at most --epochs
    assert cfg.plan_epochs(3, elapsed_s=150.0, last_epoch_s=50.0) == 3  # over budget: stop where it is
    assert TrainConfig(data="x", epochs=7).plan_epochs(1, 1e6, 1e6) == 7  # no budget: --epochs
    with pytest.raises(MSFMError, match="time_budget_s"):
        TrainConfig(data="x", time_budget_s=0.0)


def test_time_budget_stops_after_the_epochs_that_fit_and_moves_the_lr_step(tiny_csv, tmp_path, monkeypatch):
    # A budget far below one epoch: the run still trains one, then stops with a message.
    events = list(train(cfg_for(tiny_csv, tmp_path / "short", epochs=3, max_steps_per_epoch=1, time_budget_s=1e-3)))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [0]
    assert any(isinstance(e, TrainMessage) and "1 of 3 epochs fit" in e.text for e in events)
    assert (tmp_path / "short" / "best.pt").is_file() and isinstance(events[-1], TrainFinished)
    # 3 of 6 epochs fit: the x0.1 step moves from epoch 4 (2/3 of 6) to epoch 2 (2/3 of 3).
    monkeypatch.setattr(TrainConfig, "plan_epochs", lambda self, done, elapsed, last: 3)
    events = list(train(cfg_for(tiny_csv, tmp_path / "fit", epochs=6, max_steps_per_epoch=1, lr=1e-3, time_budget_s=1e6)))
    lrs = [e.lr for e in events if isinstance(e, BatchEnd)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4])
    # The schedule it ran is in the history (what reproduces the run without the budget).
    history = json.loads((tmp_path / "fit" / "history.json").read_text())
    assert [h["lr"] for h in history] == pytest.approx([1e-3, 1e-3, 1e-4])
