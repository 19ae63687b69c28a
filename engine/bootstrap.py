"""Stratified bootstrap intervals shared by ``msfm evaluate`` and the held-out comparison.

One draw of indices is used for every metric of one evaluation (AUC, κ, pointing, IoU hit
rates), so their intervals come from the same resamples. Resampling is **stratified by
label**: each resample draws the abnormal images with replacement from the abnormal ones
and the normal images from the normal ones, so every resample has both classes (an AUC)
and the same number of fractured images (the localisation denominators). Intervals are
percentile intervals (the 2.5th and 97.5th percentile of the resampled values at 95 %).
The seed is fixed so that a figure can be reproduced exactly.
"""

from __future__ import annotations

import numpy as np

#: Resamples, seed and interval level of every bootstrap interval the engine reports.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95


def bootstrap_info(resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL) -> dict:
    """How the intervals were made, for the JSON beside them."""
    return {"resamples": resamples, "seed": seed, "level": level, "stratified": True, "method": "percentile"}


def stratified_indices(y: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(resamples, n) indices into ``y`` (0/1 labels): each row draws the positives from
    the positives and the negatives from the negatives, with replacement."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    # Positives first, then negatives: the draws the held-out comparison has always made.
    # A class with no member contributes no column (a subset may hold one class only).
    parts = [members[rng.integers(0, len(members), (resamples, len(members)))]
             for members in (np.flatnonzero(y == 1), np.flatnonzero(y == 0)) if len(members)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((resamples, 0), dtype=np.int64)


def auc_kappa(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """AUC and Cohen's κ of every row of (B, n) labels ``y`` and probabilities ``p``, in
    one vectorised pass (a loop over scikit-learn would take seconds for 1000 rows).
    AUC is the Mann–Whitney statistic with tied scores counted half, as ``roc_auc_score``."""
    from scipy.stats import rankdata

    n1 = y.sum(axis=1).astype(float)
    n0 = y.shape[1] - n1
    ranks = rankdata(p, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    pred = p >= threshold
    tp = (pred & (y == 1)).sum(axis=1)
    fp = (pred & (y == 0)).sum(axis=1)
    fn, tn = n1 - tp, n0 - fp
    n = y.shape[1]
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), 0.0)
    return auc, kappa


def resampled_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (n,) over every row of ``idx`` (B, n), ignoring NaN entries (the
    images a per-image figure is not defined for, e.g. pointing on an image without a
    ground-truth box). A row without any defined entry gives NaN."""
    v = np.asarray(values, dtype=float)[idx]
    ok = ~np.isnan(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, v, 0.0).sum(axis=1) / ok.sum(axis=1)


def interval(values: np.ndarray, level: float = CI_LEVEL) -> list[float] | None:
    """Percentile interval ``[low, high]`` of the finite resampled values; None if none is finite."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(v, [tail, 100 - tail])
    return [float(lo), float(hi)]


__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CI_LEVEL", "bootstrap_info", "stratified_indices", "auc_kappa",
           "resampled_means", "interval"]
