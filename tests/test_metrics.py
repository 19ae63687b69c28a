"""Classification and localisation metrics on inputs with known answers."""

import numpy as np
import pytest

from engine.metrics import best_kappa_threshold, cam_box, classification_metrics, localization_metrics, map_peak, study_level


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
