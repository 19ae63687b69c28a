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
from numpy.typing import ArrayLike

from .thresholds import (  # noqa: F401  (re-exported: engine.model.calibration stays the public name)
    BOOTSTRAP_SEED,
    DEFAULT_HALF_WIDTH,
    HALF_WIDTH_RANGE,
    N_BOOTSTRAP,
    TARGET_SENSITIVITY,
    TARGET_SPECIFICITY,
    _arrays,
    borderline_half_width,
    candidate_thresholds,
    kappa_threshold,
    rates,
    sensitive_threshold,
    specific_threshold,
)

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
        metrics: Mapping[str, Any] = meta["metrics"] if isinstance(meta.get("metrics"), Mapping) else {}
        # Validation rates only describe this threshold if they were measured at it.
        same = metrics.get("threshold") is None or _close(metrics.get("threshold"), threshold)
        sens = _opt(metrics.get("sensitivity")) if same else None
        spec = _opt(metrics.get("specificity")) if same else None
        data: Mapping[str, Any] = meta["data"] if isinstance(meta.get("data"), Mapping) else {}
        counts: Mapping[str, Any] = data["val_counts"] if isinstance(data.get("val_counts"), Mapping) else {}
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
    probabilities: ArrayLike,
    labels: ArrayLike,
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
