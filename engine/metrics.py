"""Classification and localisation metrics (SPEC §3 "Metrics"), and the CAM-box baseline.

κ, AUC, F1, accuracy and the confusion matrix come from scikit-learn; IoU from
``torchvision.ops.box_iou``; connected components from OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, roc_auc_score
from torchvision.ops import box_iou

BoxList = Sequence[Sequence[float]]


def classification_metrics(y_true: Sequence[int], prob: Sequence[float], threshold: float = 0.5) -> dict:
    """accuracy, κ, AUC, F1 per class, JPE (eq. 12), sensitivity, specificity."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    pred = (p >= threshold).astype(int)
    n = int(len(y))
    if n == 0:
        return {"n": 0}
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(set(y.tolist())) == 2
    f1a = float(f1_score(y, pred, pos_label=1, zero_division=0))
    f1n = float(f1_score(y, pred, pos_label=0, zero_division=0))
    return {
        "n": n,
        "n_abnormal": int(y.sum()),
        "accuracy": float(accuracy_score(y, pred)),
        "kappa": float(cohen_kappa_score(y, pred)) if both or len(set(pred.tolist())) == 2 else 0.0,
        "auc": float(roc_auc_score(y, p)) if both else None,
        "f1_abnormal": f1a,
        "f1_normal": f1n,
        "jpe": ((1 - f1a) ** 2 + (1 - f1n) ** 2) / 2,
        "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "threshold": float(threshold),
    }


def best_kappa_threshold(y_true: Sequence[int], prob: Sequence[float]) -> float:
    """Threshold in (0, 1) that maximises Cohen's κ (ties: closest to 0.5)."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    if len(set(y.tolist())) < 2:
        return 0.5
    cands = np.unique(np.concatenate([np.linspace(0.05, 0.95, 91), (np.sort(p)[1:] + np.sort(p)[:-1]) / 2]))
    cands = cands[(cands > 0.01) & (cands < 0.99)]
    scores = np.array([cohen_kappa_score(y, (p >= t).astype(int)) for t in cands])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def grouped_metrics(y_true, prob, groups: Sequence[str], threshold: float) -> dict:
    """:func:`classification_metrics` per group (body part)."""
    y, p, g = np.asarray(y_true), np.asarray(prob), np.asarray(groups)
    return {str(k): classification_metrics(y[g == k], p[g == k], threshold) for k in sorted(set(g.tolist())) if k != ""}


def study_level(y_true, prob, studies: Sequence[str], threshold: float) -> dict:
    """MURA study-level metrics: the mean image probability of each study folder."""
    acc: dict[str, list] = {}
    for y, p, s in zip(y_true, prob, studies):
        if s:
            acc.setdefault(s, [y, []])[1].append(p)
    if not acc:
        return {}
    ys = [v[0] for v in acc.values()]
    ps = [float(np.mean(v[1])) for v in acc.values()]
    return classification_metrics(ys, ps, threshold)


def localization_metrics(pred_boxes: BoxList, peaks: Sequence[Sequence[float]] | None, gt: Sequence[BoxList]) -> dict:
    """Hit rates of predicted boxes at IoU >= 0.5/0.3/0.1 with some GT box, mean best IoU,
    and the pointing game (the peak point falls inside a GT box). Images without GT
    boxes are ignored. Boxes: xyxy original pixels."""
    best, points, n = [], [], 0
    for i, boxes in enumerate(gt):
        if not boxes:
            continue
        n += 1
        g = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        b = torch.tensor(pred_boxes[i], dtype=torch.float64).reshape(1, 4)
        best.append(float(box_iou(b, g).max()))
        if peaks is not None:
            x, y = peaks[i]
            points.append(bool(((g[:, 0] <= x) & (x <= g[:, 2]) & (g[:, 1] <= y) & (y <= g[:, 3])).any()))
    if n == 0:
        return {"n_images": 0}
    arr = np.array(best)
    out = {
        "n_images": n,
        "iou50": float((arr >= 0.5).mean()),
        "iou30": float((arr >= 0.3).mean()),
        "iou10": float((arr >= 0.1).mean()),
        "mean_iou": float(arr.mean()),
    }
    if peaks is not None:
        out["pointing"] = float(np.mean(points))
    return out


def cam_box(cam: np.ndarray, width: int, height: int, rel: float = 0.2) -> tuple[float, float, float, float]:
    """The classic CAM box (Zhou et al. 2016): upsample the (g, g) CAM bilinearly to the
    image, keep pixels >= ``rel * max``, box the largest connected component.
    Returns xyxy original pixels (the whole image if nothing is above threshold)."""
    m = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    peak = float(m.max())
    if not np.isfinite(peak) or peak <= 0:
        return (0.0, 0.0, float(width), float(height))
    mask = (m >= rel * peak).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return (0.0, 0.0, float(width), float(height))
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[k, :4])
    return (float(x), float(y), float(x + w), float(y + h))


def map_peak(m: np.ndarray, box: Sequence[float]) -> tuple[float, float]:
    """(x, y) original pixels of the centre of the highest cell of a (g, g) map that
    covers ``box`` (xyxy original pixels)."""
    gh, gw = m.shape
    i, j = np.unravel_index(int(np.argmax(m)), m.shape)
    x0, y0, x1, y1 = box
    return (x0 + (j + 0.5) * (x1 - x0) / gw, y0 + (i + 0.5) * (y1 - y0) / gh)
