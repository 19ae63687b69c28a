"""The figures of an evaluation (SPEC §3b, §5), from per-image records.

:func:`build_records` turns predictions into per-image numbers (probability, label, the
peak's distance to the nearest GT box, lesion/region IoU, hardware flag...); every figure
(all images, without hardware, per body part, each bootstrap resample) is then a mean over
a subset of them (:func:`figures`), so a subset costs no new prediction and all intervals
come from one set of draws. :mod:`engine.evaluation.evaluate` runs the models and assembles the JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL, auc_kappa, bootstrap_info, interval, resampled_means, stratified_indices
from ..data.sources import Sample
from ..types import Prediction
from .metrics import (
    IOU_HITS,
    POINTING_TOLERANCE,
    classification_metrics,
    covers_centre,
    iou_hit_rates,
    localization_records,
    map_peak,
    pointing_rates,
    study_level,
)


def _path_key(path: str | Path) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(str(path))))


def msfm_peak(p: Prediction) -> tuple[float, float]:
    """Peak of the object-stage activation map ``A_o`` (the v1 pointing readout), original pixels."""
    return map_peak(p.maps.a_object, p.object_box)


def finding_peak(p: Prediction) -> tuple[float, float]:
    """MSFM's pointing readout: ``Prediction.peak`` (argmax of the evidence map E, original
    pixels); the ``A_o`` peak for a prediction made without an evidence map."""
    return p.peak if p.peak is not None else msfm_peak(p)


def union_share(boxes: Sequence[Sequence[float]], width: int, height: int, grid: int = 200) -> float:
    """Share of a ``width`` x ``height`` image covered by the union of ``boxes`` (xyxy, its
    pixels), counted on a ``grid`` x ``grid`` raster of cell centres (error < 1 %)."""
    if not boxes:
        return 0.0
    xs = (np.arange(grid) + 0.5) * width / grid
    ys = (np.arange(grid) + 0.5) * height / grid
    covered = np.zeros((grid, grid), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return float(covered.mean())


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def cam_peak(p: Prediction) -> tuple[float, float]:
    """Peak of the main stage's abnormal-class CAM over the whole image (original pixels)."""
    return map_peak(p.maps.cam, (0, 0, p.width, p.height))


def window1_centre(p: Prediction) -> tuple[float, float]:
    """Centre of the highest-scoring part window (original pixels)."""
    x0, y0, x1, y1 = p.windows[0].box
    return ((x0 + x1) / 2, (y0 + y1) / 2)


# --------------------------------------------------------------------------------------
# Per-image records. Every figure of an evaluation (all images, without hardware, per body
# part, every bootstrap resample) is a mean over a subset of these, so a subset costs no
# new prediction and all intervals come from one set of draws.


@dataclass
class BaselineRecords:
    """The baselines on the same images, aligned with :class:`EvalRecords` (n,).

    ``prob``: abnormal probability of the plain classifier (NaN where it could not read
    the image); ``cam_iou`` / ``cam_dist``: best IoU of the CAM box with a GT box and the
    distance from the CAM peak to the nearest GT box (NaN: no GT box)."""

    source: str
    threshold: float
    prob: np.ndarray
    cam_iou: np.ndarray
    cam_dist: np.ndarray


@dataclass
class FMARecords:
    """The FMA darkening of each image (n,): ``gt`` the share of its GT-box area with a
    suppression factor < 1 (NaN without boxes), ``image`` the share of the whole image."""

    enabled: bool
    theta: float | None
    r: float | None
    gt: np.ndarray
    image: np.ndarray
    mode: str | None = None  # FMAConfig.mode ("paper", "saturation"); "train_only" (not at inference); None when FMA is off


@dataclass
class EvalRecords:
    """Per-image figures of one evaluation, each an (n,) array aligned with ``samples``.

    Localisation arrays are NaN for images without GT boxes (only fractured images with
    boxes count); ``*_dist`` are distances in original pixels from a point to the nearest
    GT box (0 inside, ``inf`` for no point), ``*_iou`` the best IoU with a GT box (0 for no
    box). ``hardware``: 1 / 0 from ``meta.csv``, NaN where unknown."""

    samples: list[Sample]
    preds: list[Prediction]
    threshold: float
    y: np.ndarray
    prob: np.ndarray
    parts: np.ndarray
    has_box: np.ndarray
    peak_dist: np.ndarray  # Prediction.peak (E), the pointing readout
    lesion_iou: np.ndarray  # Prediction.lesion_box
    region_iou: np.ndarray  # the eq. 11 fused box
    ao_dist: np.ndarray  # the v1 readouts, for comparison
    cam_dist: np.ndarray
    window1_dist: np.ndarray
    object_iou: np.ndarray
    hardware: np.ndarray
    has_evidence: bool  # every prediction has an evidence peak
    has_lesion: bool  # at least one prediction has a lesion box
    # Where the fracture is lost (1/0, NaN without GT boxes): the look-closer crop, some
    # part window, the rank-1 window contains the centre of a GT box.
    object_covers: np.ndarray
    windows_cover: np.ndarray
    window1_covers: np.ndarray
    windows_area: np.ndarray  # share of the image under the union of the part windows (NaN without GT boxes)
    baseline: BaselineRecords | None = None
    fma: FMARecords | None = None


def _gt(samples: Sequence[Sample]) -> list[list[tuple[float, float, float, float]]]:
    """GT boxes that count: those of fractured images (a normal image's box is ignored)."""
    return [list(s.boxes) if s.label == 1 else [] for s in samples]


def build_records(samples: Sequence[Sample], preds: Sequence[Prediction], threshold: float,
                  hardware: Mapping[str, bool] | None = None) -> EvalRecords:
    """Per-image figures of MSFM's predictions (no baselines, no FMA)."""
    gt = _gt(samples)
    peaks = [finding_peak(p) for p in preds]
    lesion_iou, peak_dist = localization_records([p.lesion_box for p in preds], peaks, gt)
    region_iou, ao_dist = localization_records([p.fused_box for p in preds], [msfm_peak(p) for p in preds], gt)
    object_iou, cam_dist = localization_records([p.object_box for p in preds], [cam_peak(p) for p in preds], gt)
    _, w1_dist = localization_records(None, [window1_centre(p) for p in preds], gt)

    def cover(boxes_of) -> np.ndarray:
        return np.array([max((covers_centre(b, g) for b in boxes_of(p)), default=0.0) if g else np.nan
                         for p, g in zip(preds, gt)])

    hw = np.full(len(samples), np.nan)
    if hardware is not None:
        for i, s in enumerate(samples):
            v = hardware.get(_path_key(s.path))
            if v is not None:
                hw[i] = float(bool(v))
    return EvalRecords(
        samples=list(samples), preds=list(preds), threshold=float(threshold),
        y=np.array([s.label for s in samples], dtype=int), prob=np.array([p.probability for p in preds], dtype=float),
        parts=np.array([s.body_part for s in samples], dtype=object), has_box=np.array([bool(g) for g in gt]),
        peak_dist=peak_dist, lesion_iou=lesion_iou, region_iou=region_iou, ao_dist=ao_dist, cam_dist=cam_dist,
        window1_dist=w1_dist, object_iou=object_iou, hardware=hw,
        has_evidence=all(p.peak is not None for p in preds), has_lesion=any(p.lesion_box is not None for p in preds),
        object_covers=cover(lambda p: [p.object_box]), windows_cover=cover(lambda p: [w.box for w in p.windows]),
        window1_covers=cover(lambda p: [w.box for w in p.windows[:1]]),
        windows_area=np.array([union_share([w.box for w in p.windows], p.width, p.height) if g else np.nan for p, g in zip(preds, gt)]),
    )


def _hits(dist: np.ndarray, tol: float) -> np.ndarray:
    """1/0 per image (NaN kept) for ``dist <= tol``."""
    return np.where(np.isnan(dist), np.nan, (dist <= tol).astype(float))


def _iou_hits(iou: np.ndarray, t: float) -> np.ndarray:
    return np.where(np.isnan(iou), np.nan, (iou >= t).astype(float))


def _loc_block(iou: np.ndarray | None, dist: np.ndarray | None) -> dict:
    """Hit rates and pointing of one readout over the images given (NaN entries skipped)."""
    out: dict[str, Any] = {}
    if iou is not None:
        out.update(iou_hit_rates(iou))
    if dist is not None:
        out.update(pointing_rates(dist))
    return out


def _median_share(boxes: list, sel: np.ndarray, preds: Sequence[Prediction]) -> float | None:
    vals = [_area(boxes[i]) / (preds[i].width * preds[i].height) for i in sel if boxes[i] is not None]
    return float(np.median(vals)) if vals else None


def _localization(r: EvalRecords, sel: np.ndarray) -> dict:
    """The ``localization`` block over the images ``sel`` (indices into the records)."""
    box_sel = sel[r.has_box[sel]]
    n = len(box_sel)
    if n == 0:
        return {"n_images": 0}
    region = _loc_block(r.region_iou[sel], None)
    out: dict[str, Any] = {
        "n_images": n,
        # SPEC §3b: the peak of E (strict and within 15 px), the lesion box and the region box.
        **pointing_rates(r.peak_dist[sel]),
        "peak": "evidence" if r.has_evidence else "a_object (no evidence map)",
        "lesion": _loc_block(r.lesion_iou[sel], None) if r.has_lesion else None,
        "region": region,
        # SPEC §5's flat keys are the region (fused) box, as before v2.
        **region,
        # v1 readings of "the peak", kept for comparison: A_o peak cell, main-stage CAM, window 1.
        "pointing_ao": pointing_rates(r.ao_dist[sel])["pointing"],
        "pointing_cam": pointing_rates(r.cam_dist[sel])["pointing"],
        "pointing_window1": pointing_rates(r.window1_dist[sel])["pointing"],
    }
    out["funnel"] = _funnel(r, box_sel)
    # Box sizes bound the IoU: a box k times the fracture's area scores at most 1/k.
    preds, samples = r.preds, r.samples
    out["median_area_fused"] = _median_share([p.fused_box for p in preds], box_sel, preds)
    out["median_area_lesion"] = _median_share([p.lesion_box for p in preds], box_sel, preds)
    out["median_area_gt"] = float(np.median([max(_area(b) for b in samples[i].boxes) / (preds[i].width * preds[i].height) for i in box_sel]))
    return out


def _funnel(r: EvalRecords, box_sel: np.ndarray) -> dict:
    """Where the fracture is lost on its way through the stages, over the fractured images
    ``box_sel``: the share whose look-closer crop, some part window, and the rank-1 window
    contain the centre of a GT box, and how often the peak of E lands inside a GT box when
    a window holds one and when none does. The part stage reads only its windows, so a
    fracture no window holds can be pointed at only through the object stage's map."""
    held = r.windows_cover[box_sel] == 1
    inside = r.peak_dist[box_sel] <= 0

    def rate(mask: np.ndarray) -> float | None:
        return float(inside[mask].mean()) if mask.any() else None

    return {
        "object_crop_holds": float(np.mean(r.object_covers[box_sel])),
        "a_window_holds": float(np.mean(held)),
        "window1_holds": float(np.mean(r.window1_covers[box_sel])),
        "n_a_window_holds": int(held.sum()),
        # What holding means: a point dropped at random lands under the windows this often.
        "median_windows_area": float(np.median(r.windows_area[box_sel])),
        "pointing_when_a_window_holds": rate(held),
        "pointing_when_no_window_holds": rate(~held),
    }


def _ci(r: EvalRecords, sel: np.ndarray, idx: np.ndarray, level: float) -> dict:
    """Bootstrap intervals of MSFM's AUC, κ (at the model's threshold), pointing,
    pointing15 and the lesion- and region-box hit rates over the resamples ``idx`` (B, n)
    of ``sel`` (indices into the records)."""
    y = r.y[sel]
    out: dict[str, Any] = {}
    both = bool(y.min() != y.max()) if len(y) else False
    if both:
        auc, kappa = auc_kappa(r.y[idx], r.prob[idx], r.threshold)
        out["auc"], out["kappa"] = interval(auc, level), interval(kappa, level)
    else:
        out["auc"] = out["kappa"] = None
    if r.has_box[sel].any():
        out["pointing"] = interval(resampled_means(_hits(r.peak_dist, 0.0), idx), level)
        out["pointing15"] = interval(resampled_means(_hits(r.peak_dist, POINTING_TOLERANCE), idx), level)
        for name, iou in (("lesion", r.lesion_iou if r.has_lesion else None), ("region", r.region_iou)):
            for key, t in IOU_HITS.items():
                if iou is not None:
                    out[f"{name}_{key}"] = interval(resampled_means(_iou_hits(iou, t), idx), level)
    return out


def _resampled_interval(values: np.ndarray, idx: np.ndarray, level: float) -> list[float] | None:
    return interval(resampled_means(values, idx), level)


def figures(r: EvalRecords, sel: np.ndarray | None = None, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
            level: float = CI_LEVEL, per_part: bool = True) -> dict:
    """Every figure of an evaluation over the images ``sel`` (indices into ``r``; all when
    None): SPEC §5 classification metrics at the model's threshold, per stage and per body
    part (with its localisation), localisation (pointing, pointing15, lesion and region
    IoU hit rates), bootstrap intervals (``ci``), and, when the records have them, the
    baselines (``baselines``) and the FMA suppression (``fma_suppression``)."""
    sel = np.arange(len(r.y)) if sel is None else np.asarray(sel, dtype=int)
    y, prob, thr = r.y[sel], r.prob[sel], r.threshold
    out = classification_metrics(y, prob, thr)
    if not len(sel):
        return out
    out["stages"] = {k: classification_metrics(y, [r.preds[i].stages[k] for i in sel], thr) for k in ("main", "object", "parts")}
    out["localization"] = _localization(r, sel)
    out["localization_object_box"] = _loc_block(r.object_iou[sel], None) | {"n_images": int(r.has_box[sel].sum())}
    if per_part:
        out["per_body_part"] = {}
        for part in sorted(set(r.parts[sel].tolist())):
            if part == "":
                continue
            ps = sel[r.parts[sel] == part]
            pm = classification_metrics(r.y[ps], r.prob[ps], thr)
            loc = _localization(r, ps)
            if loc["n_images"]:
                pm["localization"] = {k: loc[k] for k in ("n_images", "pointing", "pointing15", "lesion", "region")}
                if r.baseline is not None:
                    pm["localization"]["cam_box"] = _loc_block(r.baseline.cam_iou[ps], r.baseline.cam_dist[ps])
            out["per_body_part"][part] = pm
    studies = [r.samples[i].study for i in sel]
    if any(studies):
        out["study_level"] = study_level(y, prob, studies, thr)
    # One set of stratified draws (engine/bootstrap.py) for every interval of this subset,
    # so MSFM's, the baselines' and the FMA intervals are paired.
    idx = sel[stratified_indices(y, resamples, seed)]  # (B, n) indices into the records
    ci = _ci(r, sel, idx, level)
    if r.baseline is not None:
        out["baselines"] = _baseline_figures(r.baseline, r, sel, idx, level)
    if r.fma is not None:
        out["fma_suppression"] = _fma_figures(r.fma, r, sel, idx, level)
        if "ci" in out["fma_suppression"]:
            ci["fma_gt_area_darkened"] = out["fma_suppression"]["ci"]["gt_area_darkened"]
    out["ci"] = ci
    out["bootstrap"] = bootstrap_info(resamples, seed, level)
    return out


def _baseline_figures(b: BaselineRecords, r: EvalRecords, sel: np.ndarray, idx: np.ndarray, level: float) -> dict:
    """The ``baselines`` block: the plain classifier at its threshold and the CAM box read
    as MSFM is (CAM peak -> pointing / pointing15, CAM box -> IoU hit rates), with intervals
    from the same draws as MSFM's."""
    ok = sel[~np.isnan(b.prob[sel])]
    plain = classification_metrics(r.y[ok], b.prob[ok], b.threshold)
    rows = idx  # resamples of all of sel; unreadable images (NaN) drop out of the means
    if len(ok) == len(sel) and len(set(r.y[ok].tolist())) == 2:
        auc, kappa = auc_kappa(r.y[rows], b.prob[rows], b.threshold)
        plain["ci"] = {"auc": interval(auc, level), "kappa": interval(kappa, level)}
        # MSFM minus the plain classifier on the same draws: whether the gap between two
        # overlapping intervals is itself told apart from zero.
        auc_m, kappa_m = auc_kappa(r.y[rows], r.prob[rows], r.threshold)
        (msfm_auc,), (msfm_kappa,) = auc_kappa(r.y[sel][None], r.prob[sel][None], r.threshold)
        plain["msfm_minus_plain"] = {"auc": float(msfm_auc) - plain["auc"], "kappa": float(msfm_kappa) - plain["kappa"],
                                     "ci": {"auc": interval(auc_m - auc, level), "kappa": interval(kappa_m - kappa, level)}}
    cam: dict[str, Any] = {"n_images": int(r.has_box[sel].sum())}
    if cam["n_images"]:
        cam.update(_loc_block(b.cam_iou[sel], b.cam_dist[sel]))
        cam["ci"] = {"pointing": _resampled_interval(_hits(b.cam_dist, 0.0), rows, level),
                     "pointing15": _resampled_interval(_hits(b.cam_dist, POINTING_TOLERANCE), rows, level),
                     **{k: _resampled_interval(_iou_hits(b.cam_iou, t), rows, level) for k, t in IOU_HITS.items()}}
    return {"source": b.source, "plain_classifier": plain, "cam_box": cam}


def _fma_figures(f: FMARecords, r: EvalRecords, sel: np.ndarray, idx: np.ndarray, level: float) -> dict:
    """The ``fma_suppression`` block (SPEC §3b "fracture suppression rate")."""
    box_sel = sel[r.has_box[sel]]
    out: dict[str, Any] = {"enabled": f.enabled, "mode": f.mode, "theta": f.theta, "r": f.r, "n_images": len(box_sel)}
    if not f.enabled:
        out.update(gt_area_darkened=0.0, half_cut=0.0, image_area_darkened=0.0, image_area_darkened_all=0.0,
                   note="FMA darkens in training only in this model: nothing is darkened at inference" if f.mode == "train_only"
                   else "FMA is off in this model: nothing is darkened")
        return out
    # Means skip NaN: an image FMA could not re-read (rare) has no share.
    half = np.where(np.isnan(f.gt), np.nan, (f.gt >= 0.5).astype(float))
    image_on_boxed = np.where(r.has_box, f.image, np.nan)

    def mean(v: np.ndarray) -> float | None:
        return float(np.nanmean(v)) if np.isfinite(v).any() else None

    out["image_area_darkened_all"] = mean(f.image[sel])
    out["gt_area_darkened"] = mean(f.gt[box_sel]) if len(box_sel) else None
    out["half_cut"] = mean(half[box_sel]) if len(box_sel) else None
    out["image_area_darkened"] = mean(image_on_boxed[box_sel]) if len(box_sel) else None
    if out["gt_area_darkened"] is not None:
        out["ci"] = {"gt_area_darkened": _resampled_interval(f.gt, idx, level), "half_cut": _resampled_interval(half, idx, level),
                     "image_area_darkened": _resampled_interval(image_on_boxed, idx, level)}
    return out


