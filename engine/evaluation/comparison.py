"""The held-out comparison of the current and a fine-tuned model, and whether the new one
may be accepted.

:func:`compare_models` evaluates both models on the same held-out images, each at its own
threshold, with n per class and stratified bootstrap 95 % intervals for AUC and κ (and
the paired difference when both read the same images); :func:`assess_comparison` says
whether the new model may be accepted at all and on which metrics it scored lower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL, auc_kappa, interval, stratified_indices
from ..data.sources import Sample
from .metrics import classification_metrics

# The bootstrap (stratified by label, fixed seed, percentile intervals) is the one
# ``msfm evaluate`` uses (engine/bootstrap.py); its constants are re-exported here for
# engine.library.finetune.
#: The metrics an accept decision rests on; a new model lower on any of them needs confirmation.
DECISION_METRICS = ("auc", "kappa")


def summarize_predictions(y_true: ArrayLike, prob: ArrayLike, threshold: float, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL) -> dict[str, Any]:
    """One model on held-out images: n (and per class), AUC and κ each with a stratified
    bootstrap interval (``auc_ci``, ``kappa_ci``: ``[low, high]``, None without both
    classes), accuracy, sensitivity, specificity and the threshold."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    m = classification_metrics(y, p, threshold)
    out: dict[str, Any] = {k: m.get(k) for k in ("n", "auc", "kappa", "accuracy", "sensitivity", "specificity")}
    out.update(n_abnormal=int(y.sum()), n_normal=int(len(y) - y.sum()), threshold=float(threshold), auc_ci=None, kappa_ci=None)
    if out["n_abnormal"] and out["n_normal"]:
        idx = stratified_indices(y, resamples, seed)
        auc, kappa = auc_kappa(y[idx], p[idx], threshold)
        out["auc_ci"], out["kappa_ci"] = interval(auc, level), interval(kappa, level)
    return out


def compare_predictions(y_true: ArrayLike, prob_previous: ArrayLike, prob_new: ArrayLike, threshold_previous: float,
                        threshold_new: float, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                        level: float = CI_LEVEL) -> dict[str, Any]:
    """Both models on the same images (paired): :func:`summarize_predictions` of each under
    ``"previous"`` and ``"new"``, ``"delta"`` (new − previous AUC and κ, each ``{"value",
    "ci"}`` from the same resamples, so the interval is of the difference itself) and
    ``"bootstrap"`` (how the intervals were made)."""
    y = np.asarray(y_true, dtype=int)
    prev = summarize_predictions(y, prob_previous, threshold_previous, resamples, seed, level)
    new = summarize_predictions(y, prob_new, threshold_new, resamples, seed, level)
    out: dict[str, Any] = {"previous": prev, "new": new, "delta": None,
                           "bootstrap": {"resamples": resamples, "seed": seed, "level": level, "stratified": True}}
    if prev["auc_ci"] is not None:
        idx = stratified_indices(y, resamples, seed)  # the same draws as each model's own intervals
        a0, k0 = auc_kappa(y[idx], np.asarray(prob_previous, dtype=float)[idx], threshold_previous)
        a1, k1 = auc_kappa(y[idx], np.asarray(prob_new, dtype=float)[idx], threshold_new)
        out["delta"] = {"auc": {"value": new["auc"] - prev["auc"], "ci": interval(a1 - a0, level)},
                        "kappa": {"value": new["kappa"] - prev["kappa"], "ci": interval(k1 - k0, level)}}
    return out


def compare_models(old: str | Path, new: str | Path, samples: Sequence[Sample], device: str = "auto",
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Both models on the same held-out images, each at its own threshold
    (:func:`compare_predictions`: n per model and class, AUC and κ with bootstrap 95 %
    intervals, accuracy, sensitivity, specificity), plus each model's SHA-256 and the
    images that could not be read (``"skipped"``). The difference is paired only when both
    models read the same images; otherwise each model is summarised on its own."""
    # Imported here: the model code pulls torchvision and timm (seconds), and the app
    # imports this module for the fine-tuning panel long before it compares anything.
    from ..infer import Predictor
    from .evaluate import predict_samples

    runs = []
    for i, path in enumerate((old, new)):
        predictor = Predictor.from_checkpoint(path, device)
        step = (lambda d, _t, i=i: progress(i * len(samples) + d, 2 * len(samples))) if progress else None
        kept, preds, errors = predict_samples(predictor, samples, step)
        runs.append(([str(s.path) for s in kept], [s.label for s in kept], [p.probability for p in preds],
                     float(predictor.model.config.threshold), predictor.info.sha256, errors))
    (paths0, y0, p0, t0, sha0, err0), (paths1, y1, p1, t1, sha1, err1) = runs
    if paths0 == paths1:
        out = compare_predictions(y0, p0, p1, t0, t1)
    else:
        out = {"previous": summarize_predictions(y0, p0, t0), "new": summarize_predictions(y1, p1, t1), "delta": None,
               "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": CI_LEVEL, "stratified": True}}
    out["previous"]["sha256"], out["new"]["sha256"] = sha0, sha1
    skipped = {p: r for p, r in err0 + err1}
    out["skipped"] = [{"path": p, "reason": r} for p, r in skipped.items()]
    return out


@dataclass(frozen=True)
class ComparisonVerdict:
    """Whether a new model may be accepted on its held-out comparison. ``acceptable``:
    both models were measured on images of both classes (n > 0) with an AUC and a κ;
    ``reason`` says why not. ``worse``: the decision metrics on which the new model
    scored lower than the previous one (accepting it then needs the user's confirmation)."""

    acceptable: bool
    reason: str = ""
    worse: tuple[str, ...] = ()


def assess_comparison(cmp: dict[str, Any] | None) -> ComparisonVerdict:
    """Judge a :func:`compare_models` result; see :class:`ComparisonVerdict`."""
    if not cmp:
        return ComparisonVerdict(False, "the new model has not been compared with the current one on held-out images")
    for key, who in (("previous", "the current model"), ("new", "the new model")):
        m = cmp.get(key) or {}
        n, n1, n0 = m.get("n") or 0, m.get("n_abnormal") or 0, m.get("n_normal") or 0
        if n == 0:
            return ComparisonVerdict(False, f"no held-out image could be evaluated with {who} (n = 0)")
        if not n1 or not n0:
            return ComparisonVerdict(False, f"the held-out images of {who} lack a class ({n0} normal, {n1} abnormal); "
                                            "AUC and κ need both")
        missing = [k for k in DECISION_METRICS if m.get(k) is None]
        if missing:
            return ComparisonVerdict(False, f"{who} has no held-out {' or '.join(missing)}")
    worse = tuple(k for k in DECISION_METRICS if cmp["new"][k] < cmp["previous"][k])
    return ComparisonVerdict(True, "", worse)


__all__ = ["summarize_predictions", "compare_predictions", "compare_models", "ComparisonVerdict", "assess_comparison"]
