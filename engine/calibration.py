"""Validation calibration of a model: operating points, a borderline band, a fixed map scale.

A bare probability against one threshold overstates what the model knows: 0.524 against a
threshold of 0.523 is a coin toss, not an "ABNORMAL". :func:`calibrate` measures, on the
**validation split only** (never on test data), what the app needs to report a result
honestly, and :class:`Calibration` stores it in the checkpoint metadata
(``meta["calibration"]``, :meth:`Calibration.to_dict`):

- three operating points, each with the validation sensitivity and specificity it reaches:
  ``default`` (the checkpoint's own κ-tuned threshold, which sets ``Prediction.label``),
  ``sensitive`` (the highest threshold that still finds :data:`TARGET_SENSITIVITY` of the
  abnormal images: a reader's "dotted box") and ``specific`` (the lowest threshold that
  clears :data:`TARGET_SPECIFICITY` of the normal images: a "solid box");
- a borderline band around the default threshold: the half-width of the bootstrap 95 %
  interval of the κ-optimal threshold, i.e. how far the threshold itself could move on
  another sample of the same size (:func:`borderline_half_width`);
- the known miss rate (1 − validation sensitivity at the default threshold);
- a fixed colour scale per map kind (``cam``, ``a``), so a normal image's maps stay mostly
  transparent instead of being stretched to their own maximum (:func:`map_scale_from`).

A point is *reached* by probability ``p`` when ``p >= threshold``, the same rule as
``Prediction.label``. No Qt here: the desktop and the CLI read this module alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

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
#: The map kinds with a fixed scale (:class:`engine.types.StageMaps` attributes).
MAP_KINDS = ("evidence", "cam", "a")
#: Percentiles of all val grid cells that become the bottom and top of a map's colour
#: scale: the median cell is the bottom, so at least half of a typical image is
#: transparent, and only the top 1 % of cells reach full colour.
MAP_PERCENTILES = (50.0, 99.0)
#: Schema version of :meth:`Calibration.to_dict`.
FORMAT_VERSION = 1

Verdict = Literal["abnormal", "borderline", "possible", "normal"]
#: Every verdict :meth:`Calibration.verdict` returns, from most to least alarming.
VERDICTS: tuple[str, ...] = ("abnormal", "borderline", "possible", "normal")


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold (``p >= threshold`` is flagged) and what it reaches on validation.

    ``sensitivity``/``specificity`` are None when not measured (no calibration and no
    validation metrics, or no image of that class in the validation set).
    """

    name: str
    threshold: float
    sensitivity: float | None
    specificity: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": float(self.threshold), "sensitivity": _opt(self.sensitivity), "specificity": _opt(self.specificity)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OperatingPoint:
        return cls(str(d["name"]), float(d["threshold"]), _opt(d.get("sensitivity")), _opt(d.get("specificity")))


@dataclass(frozen=True)
class Calibration:
    """What the validation data say about a model's probabilities (see the module doc).

    Attributes:
        source: the data it was measured on, e.g. ``"FracAtlas labels.csv, split=val"``.
        n, n_abnormal, n_normal: validation images used (0 when uncalibrated and unknown).
        default, sensitive, specific: the operating points; always
            ``sensitive.threshold <= default.threshold <= specific.threshold``.
        borderline: (lo, hi) probabilities, inclusive, around ``default.threshold``.
        miss_rate: share of abnormal validation images below the default threshold.
        map_scale: ``{"cam": (lo, hi), "a": (lo, hi)}`` fixed colour range per map kind,
            None when not measured (callers then scale each map to its own range).
        calibrated: True when measured by :func:`calibrate`; False for the stand-in
            :meth:`for_checkpoint` builds for an older checkpoint.
        method: how the numbers were chosen, in words (for the model card and tooltips).
    """

    source: str
    n: int
    n_abnormal: int
    n_normal: int
    default: OperatingPoint
    sensitive: OperatingPoint
    specific: OperatingPoint
    borderline: tuple[float, float]
    miss_rate: float | None
    map_scale: dict[str, tuple[float, float]] | None
    calibrated: bool
    method: str = ""

    # -- reading a probability ----------------------------------------------------------
    def verdict(self, p: float) -> Verdict:
        """The category of abnormal probability ``p``, checked in this order:

        - ``"borderline"``: ``borderline[0] <= p <= borderline[1]`` (too close to the
          threshold to call either way; this wins over the rules below);
        - ``"abnormal"``: ``p >= default.threshold`` (the model's label; solid box);
        - ``"possible"``: ``p >= sensitive.threshold`` (flagged only at the sensitive
          operating point; dotted box);
        - ``"normal"``: below every operating point.
        """
        lo, hi = self.borderline
        if lo <= p <= hi:
            return "borderline"
        if p >= self.default.threshold:
            return "abnormal"
        if p >= self.sensitive.threshold:
            return "possible"
        return "normal"

    def band(self, p: float) -> tuple[Verdict, str | None]:
        """``(verdict(p), name)`` where ``name`` is the strictest operating point ``p``
        reaches (``"specific"``, ``"default"`` or ``"sensitive"``), None below them all.
        E.g. ``("abnormal", "specific")``: flagged even at the specific operating point."""
        reached = next((op.name for op in (self.specific, self.default, self.sensitive) if p >= op.threshold), None)
        return self.verdict(p), reached

    @property
    def points(self) -> tuple[OperatingPoint, OperatingPoint, OperatingPoint]:
        """(sensitive, default, specific), by increasing threshold."""
        return self.sensitive, self.default, self.specific

    # -- storage ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form stored as ``meta["calibration"]`` (no NaN or infinity)."""
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "n": int(self.n),
            "n_abnormal": int(self.n_abnormal),
            "n_normal": int(self.n_normal),
            "default": self.default.to_dict(),
            "sensitive": self.sensitive.to_dict(),
            "specific": self.specific.to_dict(),
            "borderline": [float(self.borderline[0]), float(self.borderline[1])],
            "miss_rate": _opt(self.miss_rate),
            "map_scale": None if self.map_scale is None else {k: [float(lo), float(hi)] for k, (lo, hi) in self.map_scale.items()},
            "calibrated": bool(self.calibrated),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; ``KeyError``/``TypeError``/``ValueError`` when malformed."""
        if int(d.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(f"calibration format {d.get('format_version')} is newer than this engine supports")
        lo, hi = (float(v) for v in d["borderline"])
        scale = d.get("map_scale")
        return cls(
            source=str(d["source"]), n=int(d["n"]), n_abnormal=int(d["n_abnormal"]), n_normal=int(d["n_normal"]),
            default=OperatingPoint.from_dict(d["default"]), sensitive=OperatingPoint.from_dict(d["sensitive"]),
            specific=OperatingPoint.from_dict(d["specific"]), borderline=(lo, hi), miss_rate=_opt(d.get("miss_rate")),
            map_scale=None if scale is None else {str(k): (float(v[0]), float(v[1])) for k, v in scale.items()},
            calibrated=bool(d["calibrated"]), method=str(d.get("method", "")),
        )

    @classmethod
    def for_checkpoint(cls, meta: Mapping[str, Any], threshold: float) -> Calibration:
        """The calibration of a checkpoint with metadata ``meta`` and decision ``threshold``
        (its ``config.threshold``).

        ``meta["calibration"]`` when present, valid and made for this threshold. Otherwise
        (an older checkpoint, or a threshold changed after calibration) an uncalibrated
        stand-in: all three points at ``threshold`` with the sensitivity/specificity of
        ``meta["metrics"]`` when they were measured at that threshold, the band
        ``threshold ± DEFAULT_HALF_WIDTH`` clipped to [0, 1], the miss rate 1 − sensitivity
        when known, no map scale (a stale calibration's map scale is kept: it does not
        depend on the threshold), ``calibrated=False``. Never raises on bad metadata: the
        calibration is optional, the model stays usable.
        """
        threshold = float(threshold)
        stored = meta.get("calibration")
        kept_scale = None
        if isinstance(stored, Mapping):
            try:
                cal = cls.from_dict(stored)
            except (KeyError, TypeError, ValueError):
                cal = None
            if cal is not None:
                if math.isclose(cal.default.threshold, threshold, rel_tol=0.0, abs_tol=1e-6):
                    return cal
                kept_scale = cal.map_scale
        metrics = meta.get("metrics") if isinstance(meta.get("metrics"), Mapping) else {}
        # Validation rates only describe this threshold if they were measured at it.
        same = metrics.get("threshold") is None or _close(metrics.get("threshold"), threshold)
        sens = _opt(metrics.get("sensitivity")) if same else None
        spec = _opt(metrics.get("specificity")) if same else None
        data = meta.get("data") if isinstance(meta.get("data"), Mapping) else {}
        counts = data.get("val_counts") if isinstance(data.get("val_counts"), Mapping) else {}
        n_abn, n_norm = int(counts.get("1", 0) or 0), int(counts.get("0", 0) or 0)
        n = int(metrics.get("n") or (n_abn + n_norm) or 0)
        return cls(
            source="not calibrated (checkpoint validation metrics)" if sens is not None or spec is not None else "not calibrated",
            n=n, n_abnormal=n_abn, n_normal=n_norm,
            default=OperatingPoint("default", threshold, sens, spec),
            sensitive=OperatingPoint("sensitive", threshold, sens, spec),
            specific=OperatingPoint("specific", threshold, sens, spec),
            borderline=(max(0.0, threshold - DEFAULT_HALF_WIDTH), min(1.0, threshold + DEFAULT_HALF_WIDTH)),
            miss_rate=None if sens is None else 1.0 - sens,
            map_scale=kept_scale, calibrated=False,
            method=f"uncalibrated: one threshold, band ±{DEFAULT_HALF_WIDTH}",
        )


# -- measuring ---------------------------------------------------------------------------
def rates(probabilities: Sequence[float], labels: Sequence[int], threshold: float) -> tuple[float | None, float | None]:
    """(sensitivity, specificity) of ``p >= threshold``; None for a class with no image."""
    p, y = _arrays(probabilities, labels)
    flagged = p >= threshold
    pos, neg = y == 1, y == 0
    sens = float(flagged[pos].mean()) if pos.any() else None
    spec = float((~flagged[neg]).mean()) if neg.any() else None
    return sens, spec


def candidate_thresholds(probabilities: Sequence[float]) -> np.ndarray:
    """Every threshold that gives a different decision on these probabilities, increasing:
    the lowest probability (flags all), midpoints between consecutive distinct
    probabilities (a margin either side for unseen images), and one above the highest."""
    u = np.unique(np.asarray(probabilities, dtype=float))
    if u.size == 0:
        return np.array([0.5])
    top = (u[-1] + 1.0) / 2 if u[-1] < 1.0 else float(np.nextafter(1.0, 2.0))
    return np.concatenate([u[:1], (u[1:] + u[:-1]) / 2, [top]])


def sensitive_threshold(probabilities: Sequence[float], labels: Sequence[int], target: float = TARGET_SENSITIVITY) -> float | None:
    """The highest candidate threshold whose sensitivity is ≥ ``target``; None without
    abnormal images. Sensitivity only falls as the threshold rises, and the lowest
    candidate reaches 1.0, so one always exists."""
    p, y = _arrays(probabilities, labels)
    if not (y == 1).any():
        return None
    c = candidate_thresholds(p)
    sens = (p[None, y == 1] >= c[:, None]).mean(axis=1)
    return float(c[np.flatnonzero(sens >= target - 1e-12)[-1]])


def specific_threshold(probabilities: Sequence[float], labels: Sequence[int], target: float = TARGET_SPECIFICITY) -> float | None:
    """The lowest candidate threshold whose specificity is ≥ ``target``; None without
    normal images (the highest candidate reaches 1.0, so one always exists)."""
    p, y = _arrays(probabilities, labels)
    if not (y == 0).any():
        return None
    c = candidate_thresholds(p)
    spec = (p[None, y == 0] < c[:, None]).mean(axis=1)
    return float(c[np.flatnonzero(spec >= target - 1e-12)[0]])


def kappa_threshold(probabilities: Sequence[float], labels: Sequence[int]) -> float:
    """:func:`engine.metrics.best_kappa_threshold` (same candidates, same tie rule),
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


def borderline_half_width(probabilities: Sequence[float], labels: Sequence[int], n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> tuple[float, tuple[float, float] | None]:
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


def map_scale_from(maps: Mapping[str, Sequence[np.ndarray]]) -> dict[str, tuple[float, float]] | None:
    """``{kind: (lo, hi)}``: the :data:`MAP_PERCENTILES` of all grid cells of all
    validation images, per map kind present (both classes pooled, so the scale does not
    depend on the labels). None when no kind has cells."""
    out: dict[str, tuple[float, float]] = {}
    for kind, ms in maps.items():
        ms = [m for m in ms if m is not None]  # e.g. no evidence map from a main-stage-only model
        cells = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in ms]) if len(ms) else np.empty(0)
        cells = cells[np.isfinite(cells)]
        if cells.size == 0:
            continue
        lo, hi = (float(v) for v in np.percentile(cells, MAP_PERCENTILES))
        out[str(kind)] = (lo, hi if hi > lo else lo + 1e-6)
    return out or None


def calibrate(
    probabilities: Sequence[float],
    labels: Sequence[int],
    maps: Mapping[str, Sequence[np.ndarray]] | None,
    threshold: float,
    source: str,
) -> Calibration:
    """Measure a :class:`Calibration` on **validation** predictions.

    Args:
        probabilities: the ensemble abnormal probability of each validation image.
        labels: 0 normal / 1 abnormal, aligned with ``probabilities``.
        maps: ``{"cam": [(g, g), ...], "a": [...]}`` of the same images for the fixed map
            scale, or None (then ``map_scale`` is None).
        threshold: the model's decision threshold (``config.threshold``).
        source: what the data are, in words (stored, shown in the app).

    The sensitive point is the highest threshold reaching :data:`TARGET_SENSITIVITY` and
    the specific point the lowest reaching :data:`TARGET_SPECIFICITY`, but never on the
    wrong side of the default: when the default threshold already meets a target, that
    point is the default itself (it meets the target, and the ordering
    sensitive ≤ default ≤ specific the app draws with is kept).
    """
    p, y = _arrays(probabilities, labels)
    threshold = float(threshold)
    default = OperatingPoint("default", threshold, *rates(p, y, threshold))
    t_sens = sensitive_threshold(p, y)
    t_spec = specific_threshold(p, y)
    t_sens = threshold if t_sens is None else min(t_sens, threshold)
    t_spec = threshold if t_spec is None else max(t_spec, threshold)
    half, interval = borderline_half_width(p, y)
    band = (max(0.0, threshold - half), min(1.0, threshold + half))
    scale = map_scale_from(maps) if maps else None
    boot = (f"half the bootstrap 95 % interval of the κ-optimal threshold ({interval[0]:.3f}–{interval[1]:.3f}, "
            f"{N_BOOTSTRAP} resamples), clipped to {HALF_WIDTH_RANGE[0]}–{HALF_WIDTH_RANGE[1]}") if interval else f"the constant {DEFAULT_HALF_WIDTH} (one class missing)"
    map_part = (f"map scale: percentiles {MAP_PERCENTILES[0]:g}–{MAP_PERCENTILES[1]:g} of all validation grid cells"
                if scale else "no map scale (maps not measured)")
    method = (f"sensitive: highest threshold with sensitivity ≥ {TARGET_SENSITIVITY:.2f}; specific: lowest threshold with "
              f"specificity ≥ {TARGET_SPECIFICITY:.2f}; borderline ±{half:.3f}: {boot}; {map_part}")
    return Calibration(
        source=source, n=int(len(y)), n_abnormal=int((y == 1).sum()), n_normal=int((y == 0).sum()),
        default=default,
        sensitive=OperatingPoint("sensitive", t_sens, *rates(p, y, t_sens)),
        specific=OperatingPoint("specific", t_spec, *rates(p, y, t_spec)),
        borderline=band,
        miss_rate=None if default.sensitivity is None else 1.0 - default.sensitivity,
        map_scale=scale, calibrated=True, method=method,
    )


# -- helpers -----------------------------------------------------------------------------
def _arrays(probabilities: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=float).ravel()
    y = np.asarray(labels, dtype=int).ravel()
    if p.shape != y.shape:
        raise ValueError(f"{p.size} probabilities but {y.size} labels")
    return p, y


def _opt(v: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _close(a: Any, b: float) -> bool:
    f = _opt(a)
    return f is not None and math.isclose(f, b, rel_tol=0.0, abs_tol=1e-6)


__all__ = [
    "Calibration", "OperatingPoint", "calibrate", "rates", "candidate_thresholds", "sensitive_threshold",
    "specific_threshold", "kappa_threshold", "borderline_half_width", "map_scale_from",
    "TARGET_SENSITIVITY", "TARGET_SPECIFICITY", "DEFAULT_HALF_WIDTH", "MAP_KINDS", "MAP_PERCENTILES", "VERDICTS",
]
