"""Cell pooling of the object and parts stages (``ModelConfig.cell_pool``): the smooth
maximum of the abnormal-class map, its limits, its gradient, the forward pass that uses
it, and fine-tuning a checkpoint with it (the torch-free predictor: tests/engine/test_lite.py)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from engine.config import FMAConfig, ModelConfig
from engine.errors import ConfigError
from engine.lite.cache import unsupported
from engine.model.checkpoint import load_checkpoint
from engine.model.msfm import MSFM, abnormal_contrast, cell_lse_logits, class_map
from engine.train.events import TrainFinished
from engine.train.loop import train
from tests.engine.train.test_train import cfg_for

warnings.filterwarnings("ignore", message="no ImageNet weights")

V1 = {"backbone": "efficientnet_lite0", "input_size": 320, "part_size": 224}


def _fc(n: int = 6) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(n, 2)


def test_lse_pool_lies_between_the_mean_and_the_maximum_cell():
    fc = _fc()
    feats = torch.rand(3, 6, 4, 5)
    with torch.no_grad():
        gap = fc(feats.mean(dim=(2, 3)))
        d = class_map(feats, abnormal_contrast(fc.weight, 1)).flatten(1)  # (3, 20), no bias
        bias = float(fc.bias[1] - fc.bias[0])
        for r in (1e-2, 1.0, 50.0):
            out = cell_lse_logits(feats, fc, 1, r)
            assert out.shape == (3, 2) and (out[:, 0] == 0).all()
            pooled = out[:, 1] - bias
            # float32: (1/r) log(...) carries ~1e-7 / r of rounding
            assert (pooled >= d.mean(1) - 1e-4).all() and (pooled <= d.max(1).values + 1e-5).all()
        # r -> 0 is GAP + FC (the paper's logit difference), r large the maximum cell.
        torch.testing.assert_close(cell_lse_logits(feats, fc, 1, 1e-2)[:, 1], gap[:, 1] - gap[:, 0], atol=1e-3, rtol=0)
        torch.testing.assert_close(cell_lse_logits(feats, fc, 1, 50.0)[:, 1] - bias, d.max(1).values, atol=0.1, rtol=0)
        # One hot cell moves r = 1's logit far more than the mean's.
        hot = feats.clone()
        hot[0, :, 2, 3] += 5 * torch.sign(fc.weight[1] - fc.weight[0])
        rise_lse = cell_lse_logits(hot, fc, 1, 1.0)[0, 1] - cell_lse_logits(feats, fc, 1, 1.0)[0, 1]
        rise_gap = (fc(hot.mean(dim=(2, 3))) - gap)[0].diff()[0]
        assert rise_lse > 3 * rise_gap > 0
        # Abnormal as class 0: the normal column is the zero one.
        flipped = cell_lse_logits(feats, fc, 0, 1.0)
        assert flipped.shape == (3, 2) and (flipped[:, 1] == 0).all()


def test_lse_pool_sends_gradient_to_the_features_and_the_fc_mostly_through_the_high_cells():
    fc = _fc()
    feats = torch.rand(1, 6, 4, 4)
    feats[0, :, 1, 2] += 3 * torch.sign(fc.weight[1] - fc.weight[0]).detach()  # one high cell
    feats.requires_grad_(True)
    cell_lse_logits(feats, fc, 1, 2.0)[0, 1].backward()
    assert fc.weight.grad is not None and fc.bias.grad is not None and fc.bias.grad.abs().sum() > 0
    per_cell = feats.grad[0].abs().sum(0)  # (4, 4)
    assert per_cell.argmax().item() == 1 * 4 + 2 and per_cell[1, 2] > 0.5 * per_cell.sum()


def test_config_validates_and_round_trips_the_cell_pool():
    cfg = ModelConfig(**V1, cell_pool="lse", cell_pool_r=2.0)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict({k: v for k, v in cfg.to_dict().items() if not k.startswith("cell_pool")}).cell_pool == "mean"
    for bad in ({"cell_pool": "max"}, {"cell_pool_r": 0.0}, {"cell_pool": "lse", "class_names": ("a", "b", "c")}):
        with pytest.raises(ConfigError):
            ModelConfig(**{**V1, **bad})
    mild = FMAConfig(r=0.9, theta_range=(0.1, 0.4), train_only=True)  # the default model's FMA
    assert unsupported(cfg.with_(fma=mild)) is None  # the torch-free predictor runs it (tests/engine/test_lite.py)


def test_forward_pools_the_object_and_part_cells_and_leaves_the_main_stage_and_maps_alone():
    torch.manual_seed(0)
    base = ModelConfig(**V1, fma=FMAConfig(enabled=False), output_stride=16)
    model = MSFM(base, pretrained="none").eval()
    x = torch.rand(2, 1, 320, 320)
    with torch.no_grad():
        mean = model(x)
        model.config = base.with_(cell_pool="lse", cell_pool_r=1.0)
        lse = model(x)
        feats_o, _ = model.backbone(torch.rand(1, 1, 320, 320), 16)
    torch.testing.assert_close(lse.main_logits, mean.main_logits)
    torch.testing.assert_close(lse.m_parts, mean.m_parts)  # same windows, same maps
    torch.testing.assert_close(lse.windows, mean.windows)
    fc = model.backbone.fc
    with torch.no_grad():
        d_obj = (lse.m_object.flatten(1) + (fc.bias[1] - fc.bias[0]))
        expected_obj = torch.logsumexp(d_obj, 1) - math.log(d_obj.shape[1])
        d_parts = lse.m_parts.flatten(2) + (fc.bias[1] - fc.bias[0])
        expected_parts = torch.logsumexp(d_parts, 2) - math.log(d_parts.shape[2])
    torch.testing.assert_close(lse.object_logits[:, 1], expected_obj, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lse.part_logits[..., 1], expected_parts, atol=1e-4, rtol=1e-4)
    assert (lse.object_logits[:, 0] == 0).all() and feats_o.shape[-1] == 20


def test_fine_tuning_a_checkpoint_with_lse_cells_records_it(tiny_csv, tmp_path):
    list(train(cfg_for(tiny_csv, tmp_path / "a", max_steps_per_epoch=1)))
    assert load_checkpoint(tmp_path / "a" / "best.pt").config.cell_pool == "mean"
    events = list(train(cfg_for(tiny_csv, tmp_path / "b", init=str(tmp_path / "a" / "best.pt"), max_steps_per_epoch=2,
                                cell_pool="lse", cell_pool_r=2.0)))
    assert isinstance(events[-1], TrainFinished)
    tuned = load_checkpoint(tmp_path / "b" / "best.pt")
    assert (tuned.config.cell_pool, tuned.config.cell_pool_r) == ("lse", 2.0)
    assert tuned.meta["train_config"]["cell_pool"] == "lse"
    # Without the flag an --init model keeps its own pooling.
    list(train(cfg_for(tiny_csv, tmp_path / "c", init=str(tmp_path / "b" / "best.pt"), max_steps_per_epoch=1)))
    assert load_checkpoint(tmp_path / "c" / "best.pt").config.cell_pool == "lse"
    with pytest.raises(ConfigError):
        cfg_for(tiny_csv, tmp_path / "d", cell_pool="max")
