"""Classification and localisation metrics on inputs with known answers."""

from pathlib import Path

import numpy as np
import pytest

from engine.bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, interval, resampled_means, stratified_indices
from engine.data.sources import Sample
from engine.evaluation.evaluate import FMARecords, _path_key, build_records, figures, read_hardware_flags
from engine.evaluation.metrics import (
    best_kappa_threshold,
    cam_box,
    classification_metrics,
    darkened_shares,
    localization_metrics,
    map_peak,
    point_box_distance,
    study_level,
)
from engine.types import ModelInfo, Prediction, StageMaps, Window


def test_classification_metrics_known_confusion_matrix():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.2, 0.3, 0.4]
    m = classification_metrics(y, p, 0.5)  # tp 3, fn 1, fp 1, tn 5
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["sensitivity"] == pytest.approx(0.75) and m["specificity"] == pytest.approx(5 / 6)
    po, pe = 0.8, (4 * 4 + 6 * 6) / 100  # predicted positives 4, actual positives 4
    assert m["kappa"] == pytest.approx((po - pe) / (1 - pe))
    f1a, f1n = 2 * 3 / (2 * 3 + 1 + 1), 2 * 5 / (2 * 5 + 1 + 1)
    assert m["f1_abnormal"] == pytest.approx(f1a) and m["f1_normal"] == pytest.approx(f1n)
    assert m["jpe"] == pytest.approx(((1 - f1a) ** 2 + (1 - f1n) ** 2) / 2)
    # AUC: of 24 positive/negative pairs, 20 are ranked right and one is tied.
    assert m["auc"] == pytest.approx(20.5 / 24)


def test_best_kappa_threshold_separates_perfectly_separable_scores():
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.2, 0.7, 0.8, 0.9]
    t = best_kappa_threshold(y, p)
    assert 0.7 < t <= 0.8
    assert classification_metrics(y, p, t)["kappa"] == pytest.approx(1.0)


def test_study_level_uses_mean_probability_per_study():
    m = study_level([1, 1, 0, 0], [0.9, 0.3, 0.2, 0.4], ["s1", "s1", "s2", "s2"], 0.5)
    assert m["n"] == 2 and m["accuracy"] == 1.0  # s1 mean 0.6 -> abnormal, s2 mean 0.3 -> normal


def test_localization_hit_rates_and_pointing():
    gt = [[(0, 0, 10, 10)], [(0, 0, 10, 10), (50, 50, 60, 60)], [], [(0, 0, 10, 10)]]
    pred = [(0, 0, 10, 10), (50, 50, 62, 60), (0, 0, 1, 1), (5, 0, 25, 10)]  # IoU 1, 10/12, -, 5/25
    peaks = [(5, 5), (100, 100), (0, 0), (9, 9)]
    m = localization_metrics(pred, peaks, gt)
    assert m["n_images"] == 3  # the image without boxes is ignored
    assert m["iou50"] == pytest.approx(2 / 3) and m["iou30"] == pytest.approx(2 / 3) and m["iou10"] == pytest.approx(1.0)
    assert m["pointing"] == pytest.approx(2 / 3)
    assert m["pointing15"] == pytest.approx(2 / 3)  # (100, 100) is 40*sqrt(2) px from the nearer box


def test_cam_box_takes_largest_component_above_fifth_of_max():
    cam = np.zeros((4, 4), np.float32)
    cam[1:3, 1:3] = 1.0
    box = cam_box(cam, 400, 400)
    x0, y0, x1, y1 = box
    assert 50 <= x0 <= 120 and 280 <= x1 <= 350 and 50 <= y0 <= 120 and 280 <= y1 <= 350
    assert cam_box(np.zeros((4, 4)), 40, 30) == (0, 0, 40, 30)


def test_map_peak_maps_cell_centre_through_box():
    m = np.zeros((4, 4))
    m[3, 1] = 5
    assert map_peak(m, (100, 200, 500, 600)) == (100 + 1.5 * 100, 200 + 3.5 * 100)


# ----- SPEC §3b: pointing game, IoU hit rates, bootstrap intervals, no-hardware subset


def test_point_box_distance_is_zero_inside_and_euclidean_outside():
    box = [(10, 10, 20, 20)]
    assert point_box_distance((15, 15), box) == 0 and point_box_distance((20, 10), box) == 0  # edges count
    assert point_box_distance((30, 15), box) == pytest.approx(10)  # beside: horizontal gap
    assert point_box_distance((23, 24), box) == pytest.approx(5)  # diagonal: 3-4-5 from the corner (20, 20)
    assert point_box_distance((30, 15), [(10, 10, 20, 20), (29, 0, 40, 5)]) == pytest.approx(10)  # the nearer box
    assert point_box_distance(None, box) == float("inf")


def test_pointing_strict_versus_within_15_px_at_known_distances():
    gt = [[(100, 100, 110, 110)]] * 6
    # distances 0 (inside), 0 (on the edge), 10, 15 (exactly the tolerance), 15.01 and no peak at all
    peaks = [(105, 105), (110, 103), (120, 105), (105, 125), (125.01, 105), None]
    m = localization_metrics(None, peaks, gt)
    assert m["n_images"] == 6 and "iou10" not in m
    assert m["pointing"] == pytest.approx(2 / 6)
    assert m["pointing15"] == pytest.approx(4 / 6)
    assert localization_metrics(None, peaks, gt, tolerance=16)["pointing15"] == pytest.approx(5 / 6)


def test_iou_hit_rates_at_each_threshold_and_a_missing_box_misses():
    g = (0, 0, 10, 10)
    # IoU with g: 1, 0.6 (6x10 inside), 0.4, 0.2, 0.05, and None (no box: IoU 0)
    pred = [(0, 0, 10, 10), (0, 0, 6, 10), (0, 0, 4, 10), (0, 0, 2, 10), (0, 0, 0.5, 10), None]
    m = localization_metrics(pred, None, [[g]] * 6)
    assert m["iou50"] == pytest.approx(2 / 6) and m["iou30"] == pytest.approx(3 / 6) and m["iou10"] == pytest.approx(4 / 6)
    assert m["mean_iou"] == pytest.approx((1 + 0.6 + 0.4 + 0.2 + 0.05) / 6)
    assert "pointing" not in m


def test_darkened_shares_reads_the_mask_through_the_resize():
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True  # the top-left quarter of the top row: original x 0-50, y 0-25 of a 100 x 100 image
    box_share, image_share = darkened_shares(mask, [(0, 0, 100, 25)], 100, 100)
    assert box_share == pytest.approx(0.5) and image_share == pytest.approx(2 / 16)
    assert darkened_shares(mask, [(0, 0, 40, 20)], 100, 100)[0] == pytest.approx(1.0)
    # Two overlapping boxes: their union counts once (x 0-75, y 0-25: 2 of 3 darkened cells wide).
    assert darkened_shares(mask, [(0, 0, 50, 25), (25, 0, 75, 25)], 100, 100)[0] == pytest.approx(50 / 75)
    assert np.isnan(darkened_shares(mask, [], 100, 100)[0])


def test_stratified_bootstrap_is_reproducible_keeps_class_counts_and_allows_one_class():
    y = np.array([1] * 5 + [0] * 7)
    a, b = stratified_indices(y, 200, 3), stratified_indices(y, 200, 3)
    assert a.shape == (200, 12) and np.array_equal(a, b)
    assert (y[a].sum(axis=1) == 5).all()
    assert not np.array_equal(a, stratified_indices(y, 200, 4))
    assert stratified_indices(np.ones(4, int), 10, 0).shape == (10, 4)
    # NaN entries (images without a box) drop out of the means.
    v = np.array([1.0, 0.0, np.nan])
    assert resampled_means(v, np.array([[0, 1, 2], [2, 2, 0]])).tolist() == [0.5, 1.0]
    assert interval(np.array([np.nan, np.nan])) is None


def fake_prediction(width: int, height: int, prob: float, peak, lesion, fused=(0, 0, 50, 50)) -> Prediction:
    """A Prediction with only what the evaluation reads (boxes, peak, probabilities, 4x4 maps)."""
    m = np.zeros((4, 4), np.float32)
    return Prediction(
        file="x.png", width=width, height=height, probability=prob, label=int(prob >= 0.5),
        stages={"main": prob, "object": prob, "parts": prob}, part_probabilities=(prob,) * 7,
        object_box=(0, 0, width, height), object_box_is_default=False, windows=[Window(box=fused, score=1.0, scale=1)],
        fused_box=fused, maps=StageMaps(a=m, cfm=np.stack([m, m]), cam=m, fw=m, a_object=m),
        model=ModelInfo(sha256="0" * 64, backbone="resnet18", input_size=128), peak=peak, lesion_box=lesion,
    )


def synthetic_set(n_abnormal: int = 30, n_normal: int = 40, seed: int = 0):
    """Fractured images with one box (60, 60, 80, 80) in a 200 x 200 image, some peaks in it,
    some 10 px away, some far; every fifth fractured image shows metal hardware."""
    rng = np.random.default_rng(seed)
    samples, preds, hardware = [], [], {}
    for i in range(n_abnormal + n_normal):
        label = int(i < n_abnormal)
        s = Sample(path=Path(f"/data/images/{i}.png"), label=label, body_part="hand" if i % 2 else "leg",
                   boxes=((60.0, 60.0, 80.0, 80.0),) if label else ())
        peak = [(70, 70), (90, 70), (150, 150)][i % 3]
        lesion = [(62, 62, 80, 80), (60, 60, 120, 120), (150, 150, 190, 190)][i % 3]  # IoU 0.81, 0.11, 0
        prob = float(np.clip(rng.normal(0.65 if label else 0.4, 0.15), 0.01, 0.99))
        samples.append(s)
        preds.append(fake_prediction(200, 200, prob, peak, lesion))
        hardware[_path_key(s.path)] = bool(label and i % 5 == 0)
    return samples, preds, hardware


def test_figures_report_pointing_iou_and_reproducible_intervals_that_contain_the_estimate():
    samples, preds, hardware = synthetic_set()
    rec = build_records(samples, preds, 0.5, hardware)
    m = figures(rec)
    loc = m["localization"]
    assert loc["n_images"] == 30 and loc["peak"] == "evidence"
    assert loc["pointing"] == pytest.approx(1 / 3) and loc["pointing15"] == pytest.approx(2 / 3)
    assert loc["lesion"]["iou10"] == pytest.approx(2 / 3) and loc["lesion"]["iou30"] == pytest.approx(1 / 3)
    assert loc["lesion"]["iou50"] == pytest.approx(1 / 3)
    assert loc["region"]["iou10"] == 0.0 and loc["iou10"] == loc["region"]["iou10"]  # the fused box (0, 0, 50, 50) misses
    ci = m["ci"]
    assert m["bootstrap"] == {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": 0.95, "stratified": True, "method": "percentile"}
    for key, value in (("auc", m["auc"]), ("kappa", m["kappa"]), ("pointing", loc["pointing"]), ("pointing15", loc["pointing15"]),
                       ("lesion_iou10", loc["lesion"]["iou10"]), ("lesion_iou30", loc["lesion"]["iou30"])):
        lo, hi = ci[key]
        assert lo <= value <= hi and lo < hi, key
    assert figures(build_records(samples, preds, 0.5, hardware))["ci"] == ci  # fixed seed: the same intervals
    assert figures(rec, seed=1)["ci"] != ci
    # Per body part: classification as before, plus localisation.
    hand = m["per_body_part"]["hand"]
    assert hand["n"] == 35 and hand["localization"]["n_images"] == 15


def test_plain_baseline_gets_a_paired_interval_of_msfm_minus_plain():
    from engine.evaluation.evaluate import baseline_records

    samples, preds, hardware = synthetic_set()
    rec = build_records(samples, preds, 0.5, hardware)
    cams = [None] * len(samples)
    # A copy of MSFM's own probabilities: the difference is 0 on every draw.
    rec.baseline = baseline_records(rec, rec.prob.tolist(), cams, 0.5, "plain classifier checkpoint")
    d = figures(rec)["baselines"]["plain_classifier"]["msfm_minus_plain"]
    assert d["auc"] == 0 and d["kappa"] == 0 and d["ci"] == {"auc": [0.0, 0.0], "kappa": [0.0, 0.0]}
    # A classifier that ranks every fractured image below every normal one: MSFM is ahead
    # on every draw, by its own AUC plus a 1 the other way.
    worse = np.where(rec.y == 1, 0.1, 0.9) + np.linspace(0, 0.01, len(samples))
    rec.baseline = baseline_records(rec, worse.tolist(), cams, 0.5, "plain classifier checkpoint")
    m = figures(rec)
    d = m["baselines"]["plain_classifier"]["msfm_minus_plain"]
    assert d["auc"] == pytest.approx(m["auc"] - m["baselines"]["plain_classifier"]["auc"])
    assert d["kappa"] == pytest.approx(m["kappa"] - m["baselines"]["plain_classifier"]["kappa"])
    assert d["ci"]["auc"][0] > 0.5 and d["ci"]["kappa"][0] > 0.5


def test_no_hardware_figures_leave_out_the_flagged_images(tmp_path):
    from engine.evaluation.evaluate import _no_hardware

    samples, preds, hardware = synthetic_set()
    rec = build_records(samples, preds, 0.5, hardware)
    nh = _no_hardware(rec, "")
    flagged = [i for i in range(30) if i % 5 == 0]  # 6 fractured images with hardware
    assert nh["n"] == 64 and nh["n_abnormal"] == 24 and nh["n_excluded_hardware"] == 6 and nh["n_excluded_unknown"] == 0
    keep = [i for i in range(70) if i not in flagged]
    expected = figures(build_records([samples[i] for i in keep], [preds[i] for i in keep], 0.5))
    assert nh["auc"] == pytest.approx(expected["auc"]) and nh["localization"]["pointing"] == pytest.approx(expected["localization"]["pointing"])
    assert nh["localization"]["n_images"] == 24 and "ci" in nh
    # Unknown flags: left out of the subset and counted; no flag at all: only a note.
    rec.hardware[:10] = np.nan
    assert _no_hardware(rec, "")["n_excluded_unknown"] == 10
    assert set(_no_hardware(build_records(samples, preds, 0.5), "no meta.csv")) == {"note"}


def test_read_hardware_flags_from_meta_csv_beside_labels(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("file,label\na.png,1\nb.png,0\n")
    flags, note = read_hardware_flags(tmp_path / "labels.csv")
    assert flags is None and "no meta.csv" in note
    (tmp_path / "meta.csv").write_text("file,width,hardware\na.png,10,1\nb.png,10,0\nc.png,10,\n")
    flags, note = read_hardware_flags(tmp_path)  # the folder works as well
    assert flags == {_path_key(tmp_path / "images" / "a.png"): True, _path_key(tmp_path / "images" / "b.png"): False}
    (tmp_path / "meta.csv").write_text("file,width\na.png,10\n")
    assert read_hardware_flags(tmp_path / "labels.csv")[0] is None


def test_fma_suppression_block_and_fma_off():
    samples, preds, _ = synthetic_set(n_abnormal=4, n_normal=4)
    rec = build_records(samples, preds, 0.5)
    rec.fma = FMARecords(True, 0.6, 0.15, np.array([1.0, 0.5, 0.2, 0.0] + [np.nan] * 4), np.array([0.3, 0.2, 0.1, 0.0, 0.1, 0.1, 0.1, 0.1]))
    f = figures(rec)["fma_suppression"]
    assert f["gt_area_darkened"] == pytest.approx(0.425) and f["half_cut"] == pytest.approx(0.5)
    assert f["image_area_darkened"] == pytest.approx(0.15) and f["image_area_darkened_all"] == pytest.approx(1.0 / 8)
    assert f["ci"]["gt_area_darkened"][0] <= 0.425 <= f["ci"]["gt_area_darkened"][1]
    rec.fma = FMARecords(False, None, None, np.zeros(8), np.zeros(8))
    off = figures(rec)["fma_suppression"]
    assert off["enabled"] is False and off["gt_area_darkened"] == 0.0 and off["half_cut"] == 0.0


def test_funnel_says_where_the_fracture_is_lost():
    from engine.evaluation.figures import union_share
    from engine.evaluation.metrics import covers_centre

    box = [(60.0, 60.0, 80.0, 80.0)]  # centre (70, 70)
    assert covers_centre((0, 0, 70, 70), box) == 1.0  # edges included
    assert covers_centre((0, 0, 69, 200), box) == 0.0 and covers_centre(None, box) == 0.0
    assert union_share([(0, 0, 100, 200), (50, 0, 150, 200)], 200, 200) == pytest.approx(0.75)
    assert union_share([], 200, 200) == 0.0

    samples, preds, hardware = synthetic_set()
    # Windows: image i % 3 == 0 has the fracture in its rank-2 window only, i % 3 == 1 in none,
    # i % 3 == 2 in its rank-1 window; the peaks (synthetic_set) are inside for i % 3 == 0 only.
    for i, p in enumerate(preds):
        far, near = (120, 120, 200, 200), (50, 50, 100, 100)
        boxes = [[far, near], [far, far], [near, far]][i % 3]
        p.windows[:] = [Window(box=b, score=1.0 - k / 10, scale=1) for k, b in enumerate(boxes)]
    f = figures(build_records(samples, preds, 0.5, hardware))["localization"]["funnel"]
    assert f["object_crop_holds"] == 1.0  # the object box is the whole image
    assert f["a_window_holds"] == pytest.approx(2 / 3) and f["window1_holds"] == pytest.approx(1 / 3)
    assert f["n_a_window_holds"] == 20
    assert f["pointing_when_a_window_holds"] == pytest.approx(0.5) and f["pointing_when_no_window_holds"] == 0.0
    assert f["median_windows_area"] == pytest.approx((80 * 80 + 50 * 50) / 200 ** 2, abs=0.01)
