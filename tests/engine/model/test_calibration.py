"""Validation calibration (issue 16): operating points, borderline band, fixed map scale,
stored in the checkpoint and carried by the shipped default model."""

import json
import math
import warnings

import numpy as np
import pytest

from engine.evaluation.metrics import best_kappa_threshold
from engine.model.calibration import (
    DEFAULT_HALF_WIDTH,
    HALF_WIDTH_RANGE,
    TARGET_SENSITIVITY,
    TARGET_SPECIFICITY,
    VERDICTS,
    Calibration,
    OperatingPoint,
    borderline_half_width,
    calibrate,
    candidate_thresholds,
    kappa_threshold,
    map_scale_from,
    rates,
)
from engine.model.checkpoint import describe_checkpoint, load_checkpoint, save_checkpoint
from engine.resources import DEFAULT_MODEL
from tests.conftest import TINY_TRAIN

# Ten abnormal and ten normal images with hand-checked operating points:
# sensitivity >= 0.9 needs 9 of 10 abnormal flagged: the highest such threshold is the
# midpoint between 0.35 (9th abnormal) and 0.30 (next lower probability) = 0.325, where
# 5 normals (< 0.325) are cleared. Specificity >= 0.9 needs 9 normals below: the lowest
# such threshold is between 0.55 (9th normal) and 0.60 = 0.575, flagging 8 abnormal.
ABN = [0.95, 0.90, 0.85, 0.80, 0.75, 0.70, 0.65, 0.60, 0.35, 0.20]
NOR = [0.05, 0.10, 0.15, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55, 0.62]
P = np.array(ABN + NOR)
Y = np.array([1] * 10 + [0] * 10)


def test_operating_points_on_a_known_example():
    cal = calibrate(P, Y, None, 0.5, "synthetic")
    assert cal.calibrated and (cal.n, cal.n_abnormal, cal.n_normal) == (20, 10, 10) and cal.source == "synthetic"
    assert cal.sensitive == OperatingPoint("sensitive", pytest.approx(0.325), pytest.approx(0.9), pytest.approx(0.5))
    assert cal.specific == OperatingPoint("specific", pytest.approx(0.575), pytest.approx(0.8), pytest.approx(0.9))
    # p >= 0.5 flags 8 abnormal and the normal at exactly 0.50.
    assert cal.default == OperatingPoint("default", 0.5, pytest.approx(0.8), pytest.approx(0.7))
    assert cal.miss_rate == pytest.approx(0.2)
    assert cal.sensitive.threshold <= cal.default.threshold <= cal.specific.threshold
    assert cal.map_scale is None and "no map scale" in cal.method
    lo, hi = cal.borderline
    assert lo < 0.5 < hi and HALF_WIDTH_RANGE[0] - 1e-12 <= (hi - lo) / 2 <= HALF_WIDTH_RANGE[1] + 1e-12


def test_a_default_that_already_meets_a_target_is_that_point():
    # At 0.2 every abnormal image is flagged: the sensitive point may not sit above the default.
    cal = calibrate(P, Y, None, 0.2, "synthetic")
    assert cal.sensitive.threshold == cal.default.threshold == 0.2 and cal.sensitive.sensitivity == 1.0
    cal = calibrate(P, Y, None, 0.7, "synthetic")  # clears all ten normals
    assert cal.specific.threshold == cal.default.threshold == 0.7 and cal.specific.specificity == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_targets_are_met_by_the_extreme_threshold(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1).round(3)  # rounding makes ties
    cal = calibrate(p, y, None, 0.5, "random")
    cands = candidate_thresholds(p)
    s, d, c = cal.points
    assert s.threshold <= d.threshold <= c.threshold
    assert (s.sensitivity, s.specificity) == rates(p, y, s.threshold) and (c.sensitivity, c.specificity) == rates(p, y, c.threshold)
    assert s.sensitivity >= TARGET_SENSITIVITY and c.specificity >= TARGET_SPECIFICITY
    if s.threshold < d.threshold:  # not clamped: the next higher candidate misses the target
        assert rates(p, y, cands[cands > s.threshold][0])[0] < TARGET_SENSITIVITY
    if c.threshold > d.threshold:
        assert rates(p, y, cands[cands < c.threshold][-1])[1] < TARGET_SPECIFICITY
    assert cal.miss_rate == pytest.approx(1 - d.sensitivity)


def test_one_class_only_leaves_the_other_rates_unknown():
    cal = calibrate([0.2, 0.7, 0.9], [1, 1, 1], None, 0.5, "abnormal only")
    assert cal.default.specificity is None and cal.specific.threshold == 0.5 and cal.specific.specificity is None
    assert cal.borderline == pytest.approx((0.5 - DEFAULT_HALF_WIDTH, 0.5 + DEFAULT_HALF_WIDTH))
    json.dumps(cal.to_dict(), allow_nan=False)


def test_vectorised_kappa_threshold_equals_the_scikit_learn_one():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(5, 80))
        y = rng.integers(0, 2, n)
        p = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1).round(int(rng.integers(1, 4)))
        assert kappa_threshold(p, y) == best_kappa_threshold(y, p)


def test_bootstrap_half_width_is_reproducible_and_clipped():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    p = np.clip(rng.normal(0.4 + 0.2 * y, 0.15), 0, 1)
    a, b = borderline_half_width(p, y), borderline_half_width(p, y)
    assert a == b and HALF_WIDTH_RANGE[0] <= a[0] <= HALF_WIDTH_RANGE[1]
    lo, hi = a[1]
    assert lo <= kappa_threshold(p, y) <= hi
    assert borderline_half_width(p, np.zeros(200, int)) == (DEFAULT_HALF_WIDTH, None)


def test_map_scale_is_fixed_percentiles_of_all_cells():
    maps = {"cam": [np.arange(50, dtype=np.float32).reshape(5, 10), np.arange(50, 100, dtype=np.float32).reshape(5, 10)],
            "a": [np.full((4, 4), 3.0)]}
    scale = map_scale_from(maps)
    assert scale["cam"] == pytest.approx((np.percentile(np.arange(100), 50), np.percentile(np.arange(100), 99)))
    assert scale["a"][0] == 3.0 and scale["a"][1] > 3.0  # a flat map still gets a usable range
    assert map_scale_from({"cam": []}) is None
    cal = calibrate(P, Y, maps, 0.5, "synthetic")
    assert cal.map_scale == scale and "percentiles 50–99" in cal.method


def uncalibrated(threshold=0.523):
    return Calibration.for_checkpoint({}, threshold)


def test_verdicts_around_the_band():
    cal = calibrate(P, Y, None, 0.5, "synthetic")
    lo, hi = cal.borderline
    assert cal.verdict(lo) == cal.verdict(hi) == cal.verdict(0.5) == "borderline"  # inclusive
    assert cal.verdict(hi + 1e-6) == "abnormal" and cal.verdict(1.0) == "abnormal"
    assert cal.verdict(lo - 1e-6) == "possible" and cal.verdict(cal.sensitive.threshold) == "possible"
    assert cal.verdict(cal.sensitive.threshold - 1e-6) == "normal" and cal.verdict(0.0) == "normal"
    assert cal.band(0.95) == ("abnormal", "specific")
    assert cal.band(0.30) == ("normal", None)
    assert cal.band((cal.sensitive.threshold + lo) / 2) == ("possible", "sensitive")
    assert cal.band(0.5) == ("borderline", "default")
    assert {cal.verdict(float(p)) for p in np.linspace(0, 1, 201)} <= set(VERDICTS)
    # The example: 0.524 against 0.523 is not a bold ABNORMAL.
    assert uncalibrated().verdict(0.524) == "borderline"
    assert uncalibrated().verdict(0.60) == "abnormal" and uncalibrated().verdict(0.40) == "normal"


def test_for_checkpoint_without_calibration():
    meta = {"metrics": {"n": 213, "sensitivity": 0.667, "specificity": 0.818, "threshold": 0.523},
            "data": {"val_counts": {"0": 132, "1": 81}}}
    cal = Calibration.for_checkpoint(meta, 0.523)
    assert not cal.calibrated and cal.map_scale is None
    assert (cal.n, cal.n_abnormal, cal.n_normal) == (213, 81, 132)
    for op, name in zip(cal.points, ("sensitive", "default", "specific")):
        assert op == OperatingPoint(name, 0.523, 0.667, 0.818)
    assert cal.borderline == pytest.approx((0.473, 0.573)) and cal.miss_rate == pytest.approx(0.333)
    # Rates measured at another threshold say nothing about this one.
    other = Calibration.for_checkpoint(meta, 0.6)
    assert other.default.sensitivity is None and other.miss_rate is None
    bare = uncalibrated(0.98)
    assert bare.borderline == pytest.approx((0.93, 1.0)) and bare.default.sensitivity is None and bare.n == 0
    assert uncalibrated(0.01).borderline == pytest.approx((0.0, 0.06))
    assert uncalibrated(0.5).verdict(0.56) == "abnormal" and uncalibrated(0.5).verdict(0.44) == "normal"  # no "possible"


def test_for_checkpoint_reads_the_stored_calibration_and_refuses_stale_or_broken_ones():
    cal = calibrate(P, Y, {"cam": [np.arange(16.0).reshape(4, 4)]}, 0.5, "synthetic")
    assert Calibration.for_checkpoint({"calibration": cal.to_dict()}, 0.5) == cal
    stale = Calibration.for_checkpoint({"calibration": cal.to_dict()}, 0.6)  # threshold changed since
    assert not stale.calibrated and stale.default.threshold == 0.6 and stale.map_scale == cal.map_scale
    broken = Calibration.for_checkpoint({"calibration": {"source": "x"}}, 0.5)
    assert not broken.calibrated and broken.default.threshold == 0.5
    newer = dict(cal.to_dict(), format_version=99)
    assert not Calibration.for_checkpoint({"calibration": newer}, 0.5).calibrated


def test_to_dict_is_json_safe_and_round_trips():
    cal = calibrate(P, Y, {"cam": [np.arange(16.0).reshape(4, 4)], "a": [np.ones((4, 4))]}, 0.5, "synthetic")
    d = json.loads(json.dumps(cal.to_dict(), allow_nan=False))
    assert Calibration.from_dict(d) == cal
    assert set(d) >= {"source", "n", "n_abnormal", "n_normal", "default", "sensitive", "specific", "borderline", "miss_rate", "map_scale", "calibrated"}
    assert d["default"] == {"name": "default", "threshold": 0.5, "sensitivity": pytest.approx(0.8), "specificity": pytest.approx(0.7)}


def test_round_trip_through_a_checkpoint(tmp_path, resnet18_model):
    cal = calibrate(P, Y, {"cam": [np.arange(16.0).reshape(4, 4)], "a": [np.ones((4, 4))]}, 0.5, "synthetic")
    path = tmp_path / "cal.pt"
    save_checkpoint(path, resnet18_model, {"name": "x", "calibration": cal.to_dict()}, config=resnet18_model.config.with_(threshold=0.5))
    d = describe_checkpoint(path)
    assert d.calibration == cal and d.threshold == 0.5
    assert load_checkpoint(path).calibration == cal
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, resnet18_model, {"name": "x", "metrics": {"sensitivity": 0.5, "specificity": 0.75, "threshold": 0.5}})
    old = describe_checkpoint(plain).calibration
    assert not old.calibrated and old.default == OperatingPoint("default", resnet18_model.config.threshold, 0.5, 0.75)


def test_training_stores_the_validation_calibration(tiny_csv, tmp_path):
    from engine.train.loop import train
    from engine.train.setup import TrainConfig

    for kind in ("msfm", "plain"):
        cfg = TrainConfig(**dict(TINY_TRAIN, data=str(tiny_csv), out=str(tmp_path / kind), model=kind, epochs=1,
                                 checkpoint_every=0, max_steps_per_epoch=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in train(cfg):
                pass
        ck = load_checkpoint(tmp_path / kind / "best.pt")
        cal = ck.calibration
        assert cal.calibrated and (cal.n, cal.n_abnormal, cal.n_normal) == (8, 4, 4), kind
        assert cal.default.threshold == ck.config.threshold and "validation split" in cal.source
        assert cal.default.sensitivity == pytest.approx(ck.meta["metrics"]["sensitivity"])
        if kind == "msfm":
            assert set(cal.map_scale) == {"evidence", "cam", "a"} and all(lo < hi for lo, hi in cal.map_scale.values())
        else:
            assert cal.map_scale is None


def test_the_shipped_default_model_is_calibrated_on_validation():
    d = describe_checkpoint(DEFAULT_MODEL)
    cal = d.calibration
    assert cal.calibrated and (cal.n, cal.n_abnormal, cal.n_normal) == (213, 81, 132) and "val" in cal.source
    assert cal.default.threshold == d.threshold
    for op in cal.points:
        assert 0.0 <= op.sensitivity <= 1.0 and 0.0 <= op.specificity <= 1.0
    assert cal.sensitive.threshold <= cal.default.threshold <= cal.specific.threshold
    assert cal.sensitive.sensitivity >= TARGET_SENSITIVITY and cal.specific.specificity >= TARGET_SPECIFICITY
    lo, hi = cal.borderline
    assert lo < cal.default.threshold < hi
    assert cal.miss_rate == pytest.approx(1 - cal.default.sensitivity)
    # The calibration reproduces the model card's validation sensitivity/specificity.
    assert cal.default.sensitivity == pytest.approx(d.metrics["sensitivity"]) and cal.default.specificity == pytest.approx(d.metrics["specificity"])
    assert set(cal.map_scale) == {"evidence", "cam", "a"} and all(math.isfinite(lo) and lo < hi for lo, hi in cal.map_scale.values())
