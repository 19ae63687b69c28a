"""Classification and localisation metrics (SPEC §3 "Metrics"), and the CAM-box baseline.

κ, AUC, F1, accuracy and the confusion matrix come from scikit-learn; IoU from
``torchvision.ops.box_iou``; connected components from OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

BoxList = Sequence[Sequence[float]]


def classification_metrics(y_true: ArrayLike, prob: ArrayLike, threshold: float = 0.5) -> dict:
    """accuracy, κ, AUC, F1 per class, JPE (eq. 12), sensitivity, specificity."""
    # Imported here: scikit-learn takes 2.5 s to import, and the app starts without metrics.
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, roc_auc_score

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    pred = (p >= threshold).astype(int)
    n = len(y)
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


def best_kappa_threshold(y_true: ArrayLike, prob: ArrayLike) -> float:
    """Threshold in (0, 1) that maximises Cohen's κ (ties: closest to 0.5)."""
    from sklearn.metrics import cohen_kappa_score

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


#: The standard pointing game's tolerance (Zhang et al., ECCV 2016), in source pixels:
#: ``pointing15`` counts a peak within this distance of a ground-truth box as a hit.
POINTING_TOLERANCE = 15.0
#: IoU thresholds of the hit rates, as JSON keys.
IOU_HITS = {"iou10": 0.1, "iou30": 0.3, "iou50": 0.5}


def point_box_distance(point: Sequence[float] | None, boxes: BoxList) -> float:
    """Euclidean distance from ``point`` (x, y) to the nearest of ``boxes`` (xyxy), in the
    same pixels: 0 inside a box or on its edge, ``inf`` for no point (a miss)."""
    if point is None:
        return float("inf")
    g = np.asarray(boxes, dtype=float).reshape(-1, 4)
    x, y = float(point[0]), float(point[1])
    dx = np.maximum(np.maximum(g[:, 0] - x, x - g[:, 2]), 0.0)
    dy = np.maximum(np.maximum(g[:, 1] - y, y - g[:, 3]), 0.0)
    return float(np.hypot(dx, dy).min())


def covers_centre(box: Sequence[float] | None, boxes: BoxList) -> float:
    """1.0 when ``box`` (xyxy) contains the centre of one of ``boxes`` (xyxy, same pixels;
    edges included), else 0.0 (also for no box). What a crop or window must do for the
    stage that reads it to be able to point at that lesion."""
    if box is None:
        return 0.0
    g = np.asarray(boxes, dtype=float).reshape(-1, 4)
    cx, cy = (g[:, 0] + g[:, 2]) / 2, (g[:, 1] + g[:, 3]) / 2
    x0, y0, x1, y1 = (float(v) for v in box)
    return float(((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)).any())


def best_iou(box: Sequence[float] | None, boxes: BoxList) -> float:
    """Highest IoU of ``box`` (xyxy) with any of ``boxes`` (xyxy, same pixels); 0 for no box
    (a prediction that gave none misses)."""
    import torch
    from torchvision.ops import box_iou  # here: importing torchvision takes seconds (torch._dynamo)

    if box is None:
        return 0.0
    g = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    b = torch.tensor(box, dtype=torch.float64).reshape(1, 4)
    return float(box_iou(b, g).max())


def localization_records(pred_boxes: Sequence[Sequence[float] | None] | None, peaks: Sequence[Sequence[float] | None] | None,
                         gt: Sequence[BoxList]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image localisation figures, ``(ious, distances)``, each (n,) float: the best IoU
    of the predicted box with a GT box and the distance from the peak to the nearest GT box
    (:func:`point_box_distance`). NaN for images without GT boxes (they do not count), and
    for every image when ``pred_boxes`` / ``peaks`` is None. Boxes and points: original pixels."""
    n = len(gt)
    ious = np.full(n, np.nan)
    dists = np.full(n, np.nan)
    for i, boxes in enumerate(gt):
        if not boxes:
            continue
        if pred_boxes is not None:
            ious[i] = best_iou(pred_boxes[i], boxes)
        if peaks is not None:
            dists[i] = point_box_distance(peaks[i], boxes)
    return ious, dists


def iou_hit_rates(ious: np.ndarray) -> dict:
    """``iou10/iou30/iou50`` (share of images whose best IoU reaches 0.1/0.3/0.5) and
    ``mean_iou`` over the defined (non-NaN) entries; {} when there are none."""
    v = np.asarray(ious, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {}
    out = {k: float((v >= t).mean()) for k, t in IOU_HITS.items()}
    out["mean_iou"] = float(v.mean())
    return out


def pointing_rates(dists: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> dict:
    """``pointing`` (the peak inside a GT box, edges included: distance 0) and
    ``pointing15`` (within ``tolerance`` source pixels of one) over the defined entries."""
    v = np.asarray(dists, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {}
    return {"pointing": float((v <= 0).mean()), "pointing15": float((v <= tolerance).mean())}


def localization_metrics(pred_boxes: Sequence[Sequence[float] | None] | None, peaks: Sequence[Sequence[float] | None] | None,
                         gt: Sequence[BoxList], tolerance: float = POINTING_TOLERANCE) -> dict:
    """Hit rates of predicted boxes at IoU >= 0.5/0.3/0.1 with some GT box, mean best IoU,
    and the pointing game: ``pointing`` (the peak point inside a GT box, edges included)
    and ``pointing15`` (within ``tolerance`` source pixels of one). Only images with GT
    boxes count. Boxes: xyxy original pixels; points (x, y) original pixels; a None box or
    peak of one image is a miss."""
    ious, dists = localization_records(pred_boxes, peaks, gt)
    n = int(sum(1 for g in gt if g))
    if n == 0:
        return {"n_images": 0}
    out: dict = {"n_images": n}
    if pred_boxes is not None:
        out.update(iou_hit_rates(ious))
    if peaks is not None:
        out.update(pointing_rates(dists, tolerance))
    return out


def darkened_shares(darkened: np.ndarray, boxes: BoxList, width: int, height: int) -> tuple[float, float]:
    """What a darkening mask takes of the ground truth: ``(box share, image share)``.

    ``darkened`` (h, w) bool covers the whole image (the S x S network input is a direct
    resize, so cell (i, j) covers original pixels ``[j*W/w, (j+1)*W/w) x [i*H/h, (i+1)*H/h)``);
    ``boxes`` are xyxy original pixels. The mask is read at every original pixel centre;
    the box share is the darkened part of the union of the boxes (pixels whose centre lies
    in a box, edges included; a box thinner than a pixel counts the pixel holding its
    centre), the image share the darkened part of the whole image. NaN box share without boxes."""
    m = np.asarray(darkened, dtype=bool)
    h, w = m.shape
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
    src = m[rows][:, cols]  # (H, W): the mask at each original pixel centre
    image_share = float(m.mean())
    if not boxes:
        return float("nan"), image_share
    inside = np.zeros((height, width), bool)
    xc, yc = np.arange(width) + 0.5, np.arange(height) + 0.5
    for x0, y0, x1, y1 in boxes:
        cx = (xc >= x0) & (xc <= x1)
        cy = (yc >= y0) & (yc <= y1)
        if not cx.any():
            cx[min(max(int((x0 + x1) / 2), 0), width - 1)] = True
        if not cy.any():
            cy[min(max(int((y0 + y1) / 2), 0), height - 1)] = True
        inside |= cy[:, None] & cx[None, :]
    return float(src[inside].mean()), image_share


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
