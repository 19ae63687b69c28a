"""Each loss of eq. 6-9 against a hand computation."""

import math

import pytest
import torch

from engine.train.losses import LossConfig, body_part_weights, msfm_loss, sample_weights, stage_loss

LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
TARGET = torch.tensor([0, 0, 1])


def ce_by_hand():
    out = []
    for (a, b), t in zip(LOGITS.tolist(), TARGET.tolist()):
        z = math.log(math.exp(a) + math.exp(b))
        out.append(z - (a if t == 0 else b))
    return out


def test_ce_and_wce():
    ce = ce_by_hand()
    assert stage_loss(LOGITS, TARGET, LossConfig("ce")).item() == pytest.approx(sum(ce) / 3, rel=1e-6)
    w = torch.tensor([0.25, 0.5, 2.0])
    expect = (0.25 * ce[0] + 0.5 * ce[1] + 2.0 * ce[2]) / 3
    assert stage_loss(LOGITS, TARGET, LossConfig("wce"), w).item() == pytest.approx(expect, rel=1e-6)


def test_mfl_is_per_sample_focal_mean():
    ce = ce_by_hand()
    beta = 2.0
    expect = sum((1 - math.exp(-c)) ** beta * c for c in ce) / 3
    assert stage_loss(LOGITS, TARGET, LossConfig("mfl", beta=beta)).item() == pytest.approx(expect, rel=1e-6)


def test_alpha_fl_and_alpha_wfl_use_the_batch_loss():
    ce = ce_by_hand()
    m = sum(ce) / 3
    expect = 0.8 * (1 - math.exp(-m)) ** 2 * m
    assert stage_loss(LOGITS, TARGET, LossConfig("afl")).item() == pytest.approx(expect, rel=1e-6)
    w = torch.tensor([0.4, 0.4, 0.6])
    wce = (0.4 * ce[0] + 0.4 * ce[1] + 0.6 * ce[2]) / 3
    expect_w = 0.5 * (1 - math.exp(-wce)) ** 3 * wce
    assert stage_loss(LOGITS, TARGET, LossConfig("awfl", alpha=0.5, beta=3.0), w).item() == pytest.approx(expect_w, rel=1e-6)


def test_body_part_weights_from_counts():
    labels = [1, 0, 0, 0, 1, 1, 0, 1]
    parts = ["hand", "hand", "hand", "hand", "leg", "leg", "leg", "hip"]
    table = body_part_weights(labels, parts)
    # hand: 1 positive, 3 negatives -> w+ = 3/4, w- = 1/4
    assert table["hand"] == pytest.approx((0.25, 0.75))
    assert table["leg"] == pytest.approx((2 / 3, 1 / 3))  # 2 positives, 1 negative
    # hip has a single class: falls back to the overall weights (4 pos, 4 neg)
    assert table["hip"] == pytest.approx((0.5, 0.5)) and table["*"] == pytest.approx((0.5, 0.5))
    w = sample_weights(torch.tensor([1, 0, 1]), ["hand", "hand", "unknown"], table)
    assert w.tolist() == pytest.approx([0.75, 0.25, 0.5])


def test_total_is_main_plus_object_plus_each_part():
    cfg = LossConfig("ce")
    main = LOGITS
    obj = LOGITS.flip(1)
    parts = torch.stack([LOGITS * (i + 1) for i in range(7)], dim=1)  # (B, 7, K)
    out = msfm_loss(main, obj, parts, TARGET, cfg)
    expect_parts = sum(stage_loss(LOGITS * (i + 1), TARGET, cfg) for i in range(7))
    assert out["parts"].item() == pytest.approx(expect_parts.item(), rel=1e-6)
    assert out["total"].item() == pytest.approx((stage_loss(main, TARGET, cfg) + stage_loss(obj, TARGET, cfg) + expect_parts).item(), rel=1e-6)
    warm = msfm_loss(main, None, None, TARGET, cfg)
    assert set(warm) == {"main", "total"} and warm["total"] == warm["main"]


def test_unknown_loss_and_missing_weights_are_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        stage_loss(LOGITS, TARGET, LossConfig("dice"))
    with pytest.raises(ValueError, match="needs per-sample weights"):
        stage_loss(LOGITS, TARGET, LossConfig("awfl"))
