"""Operating thresholds measured on validation probabilities (no model, no Qt).

The pieces :func:`engine.model.calibration.calibrate` assembles a :class:`~engine.model.calibration.Calibration`
from: sensitivity and specificity at a threshold, the candidate thresholds of a set of
probabilities, the thresholds reaching a target sensitivity or specificity, the κ-optimal
threshold (vectorised for the bootstrap) and the bootstrap half-width of the borderline band.
A point is *reached* by probability ``p`` when ``p >= threshold``, as ``Prediction.label``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: The sensitive operating point finds at least this share of the abnormal val images.
TARGET_SENSITIVITY = 0.90
#: The specific operating point clears at least this share of the normal val images.
TARGET_SPECIFICITY = 0.90
#: Half-width of the borderline band of a checkpoint without a calibration, and the value
#: the bootstrap falls back to when it cannot run (one class missing). 0.05 is close to what
#: the bootstrap measured for the shipped model (0.058, MODEL_CARD.md).
DEFAULT_HALF_WIDTH = 0.05
#: The bootstrap half-width is clipped to this range: below 0.02 a band no longer covers the
#: rounding of the three decimals the app shows, above 0.10 (a tiny or degenerate val set)
#: it would call most results borderline.
HALF_WIDTH_RANGE = (0.02, 0.10)
#: Bootstrap resamples and seed of :func:`borderline_half_width`. The half-width of the
#: shipped model moved by < 0.002 between 200 and 1000 resamples and over seeds 0–3.
N_BOOTSTRAP = 500
BOOTSTRAP_SEED = 0


def rates(probabilities: ArrayLike, labels: ArrayLike, threshold: float) -> tuple[float | None, float | None]:
    """(sensitivity, specificity) of ``p >= threshold``; None for a class with no image."""
    p, y = _arrays(probabilities, labels)
    flagged = p >= threshold
    pos, neg = y == 1, y == 0
    sens = float(flagged[pos].mean()) if pos.any() else None
    spec = float((~flagged[neg]).mean()) if neg.any() else None
    return sens, spec


def candidate_thresholds(probabilities: ArrayLike) -> np.ndarray:
    """Every threshold that gives a different decision on these probabilities, increasing:
    the lowest probability (flags all), midpoints between consecutive distinct
    probabilities (a margin either side for unseen images), and one above the highest."""
    u = np.unique(np.asarray(probabilities, dtype=float))
    if u.size == 0:
        return np.array([0.5])
    top = (u[-1] + 1.0) / 2 if u[-1] < 1.0 else float(np.nextafter(1.0, 2.0))
    return np.concatenate([u[:1], (u[1:] + u[:-1]) / 2, [top]])


def sensitive_threshold(probabilities: ArrayLike, labels: ArrayLike, target: float = TARGET_SENSITIVITY) -> float | None:
    """The highest candidate threshold whose sensitivity is ≥ ``target``; None without
    abnormal images. Sensitivity only falls as the threshold rises, and the lowest
    candidate reaches 1.0, so one always exists."""
    p, y = _arrays(probabilities, labels)
    if not (y == 1).any():
        return None
    c = candidate_thresholds(p)
    sens = (p[None, y == 1] >= c[:, None]).mean(axis=1)
    return float(c[np.flatnonzero(sens >= target - 1e-12)[-1]])


def specific_threshold(probabilities: ArrayLike, labels: ArrayLike, target: float = TARGET_SPECIFICITY) -> float | None:
    """The lowest candidate threshold whose specificity is ≥ ``target``; None without
    normal images (the highest candidate reaches 1.0, so one always exists)."""
    p, y = _arrays(probabilities, labels)
    if not (y == 0).any():
        return None
    c = candidate_thresholds(p)
    spec = (p[None, y == 0] < c[:, None]).mean(axis=1)
    return float(c[np.flatnonzero(spec >= target - 1e-12)[0]])


def kappa_threshold(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """:func:`engine.evaluation.metrics.best_kappa_threshold` (same candidates, same tie rule),
    vectorised over the candidates for the bootstrap: Cohen's κ from the confusion counts,
    ``(p_o − p_e) / (1 − p_e)``, 0 where ``p_e = 1``. Tested equal to the scikit-learn one."""
    p, y = _arrays(probabilities, labels)
    if len(set(y.tolist())) < 2:
        return 0.5
    s = np.sort(p)
    c = np.unique(np.concatenate([np.linspace(0.05, 0.95, 91), (s[1:] + s[:-1]) / 2]))
    c = c[(c > 0.01) & (c < 0.99)]
    pred = p[None, :] >= c[:, None]
    n = len(y)
    tp = (pred & (y == 1)).sum(1)
    fp = (pred & (y == 0)).sum(1)
    fn = (~pred & (y == 1)).sum(1)
    tn = n - tp - fp - fn
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    kappa = np.where(pe < 1, (po - pe) / np.where(pe < 1, 1 - pe, 1.0), 0.0)
    best = np.flatnonzero(kappa >= kappa.max() - 1e-12)
    return float(c[best[np.argmin(np.abs(c[best] - 0.5))]])


def borderline_half_width(probabilities: ArrayLike, labels: ArrayLike, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> tuple[float, tuple[float, float] | None]:
    """(half-width, bootstrap 95 % interval) of the borderline band.

    The default threshold is the κ-optimal one on validation; resampling the validation
    images with replacement and re-tuning shows how far it could move on another sample
    of that size. Half the width of the 2.5–97.5 percentile interval of those thresholds
    is the half-width: a probability that close to the threshold could be called either
    way by an equally justified threshold. Clipped to :data:`HALF_WIDTH_RANGE`;
    :data:`DEFAULT_HALF_WIDTH` (and no interval) when a class is missing.
    """
    p, y = _arrays(probabilities, labels)
    if len(set(y.tolist())) < 2:
        return DEFAULT_HALF_WIDTH, None
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        ix = rng.integers(0, len(y), len(y))
        boot.append(kappa_threshold(p[ix], y[ix]))
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return float(np.clip((hi - lo) / 2, *HALF_WIDTH_RANGE)), (lo, hi)


def _arrays(probabilities: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=float).ravel()
    y = np.asarray(labels, dtype=int).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} labels")
    return p, y
