"""Evaluation of a model on labelled samples, with the baselines beside it (SPEC §3, §3b, §5).

MSFM is scored on its ensemble probability at the checkpoint's threshold. Localisation
(SPEC §3b) counts only fractured images with ground-truth boxes (``boxes.csv`` beside the
labels; an image without boxes is skipped), all in original pixels:

- ``pointing``: ``Prediction.peak`` (argmax of the evidence map E) inside a GT box, edges
  included; ``pointing15``: within 15 px of one (the pointing game of Zhang et al. 2016);
- ``lesion`` / ``region``: IoU >= 0.1/0.3/0.5 hit rates of ``lesion_box`` and of the eq. 11
  ``fused_box`` (a missing box is a miss). SPEC §5's flat ``iou*`` keys stay the region box;
- the v1 readouts beside them: ``pointing_ao`` (peak of the object-stage map ``A_o``),
  ``pointing_cam`` (peak of the main-stage abnormal CAM), ``pointing_window1`` (centre of the
  rank-1 window).

Baselines, same data and backbone: a **plain classifier** (backbone + GAP + FC, from a
checkpoint trained with ``msfm train --model plain``; without one, MSFM's own main stage
stands in and the JSON says so) and the **CAM box** of that classifier (CAM of the
predicted class, 0.2 x max, largest component), read as MSFM is (CAM peak -> pointing).

Every figure carries a stratified bootstrap 95 % interval (``ci``; :mod:`engine.bootstrap`:
1,000 resamples, seed 0, percentile), is repeated without metal-hardware images
(``no_hardware``, FracAtlas ``meta.csv``) and per body part; ``fma_suppression`` is the
share of fracture-box area the model's FMA darkens.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CI_LEVEL, auc_kappa, bootstrap_info, interval, resampled_means, stratified_indices
from .data.sources import Sample
from .errors import ImageLoadError
from .infer import Predictor
from .io import load_image
from .metrics import (
    IOU_HITS, POINTING_TOLERANCE, best_kappa_threshold, cam_box, classification_metrics, darkened_shares, iou_hit_rates,
    localization_metrics, localization_records, map_peak, pointing_rates, study_level,
)
from .model.msfm import MSFM
from .model.stage1 import activation_maps
from .preprocess import make_batch
from .scope import OutOfScope, check_scope
from .types import LoadedImage, Prediction

Progress = Callable[[int, int], None]


def predict_samples(predictor: Predictor, samples: Sequence[Sample], progress: Progress | None = None,
                    out_of_scope: list[OutOfScope] | None = None) -> tuple[list[Sample], list[Prediction], list[tuple[str, str]]]:
    """Predict the first frame of every sample; returns the kept samples, their predictions
    and the (path, reason) of those that could not be read.

    With an ``out_of_scope`` list, every image is checked against the model's intended
    use (:func:`engine.scope.check_scope`) first: refused ones are appended to it and
    left out (``predictor.enforce_scope``) or scored with the research mark (without).
    Without one nothing is checked: training validation reads the user's own labelled
    data, whatever it shows."""
    kept: list[Sample] = []
    preds: list[Prediction] = []
    errors: list[tuple[str, str]] = []
    batch_s: list[Sample] = []
    batch_im: list[tuple[LoadedImage, str | None]] = []
    bs = predictor.batch_size

    def flush():
        preds.extend(predictor.predict_marked(batch_im))
        kept.extend(batch_s)
        batch_s.clear()
        batch_im.clear()

    for i, s in enumerate(samples):
        try:
            im = load_image(s.path)
        except ImageLoadError as exc:
            errors.append((str(s.path), exc.reason))
            im = None
        if im is not None:
            reason = check_scope(im) if out_of_scope is not None else None
            if reason is not None:
                out_of_scope.append(OutOfScope.of(im, reason))
            if reason is None or not predictor.enforce_scope:
                batch_im.append((im, reason))
                batch_s.append(s)
        if len(batch_im) >= bs:
            flush()
            if progress:
                progress(i + 1, len(samples))
    if batch_im:
        flush()
    if progress:
        progress(len(samples), len(samples))
    return kept, preds, errors


def msfm_peak(p: Prediction) -> tuple[float, float]:
    """Peak of the object-stage activation map ``A_o`` (the v1 pointing readout), original pixels."""
    return map_peak(p.maps.a_object, p.object_box)


def finding_peak(p: Prediction) -> tuple[float, float]:
    """MSFM's pointing readout: ``Prediction.peak`` (argmax of the evidence map E, original
    pixels); the ``A_o`` peak for a prediction made without an evidence map."""
    return p.peak if p.peak is not None else msfm_peak(p)


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
    mode: str | None = None  # FMAConfig.mode ("paper", "saturation"); None when FMA is off


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
    # Box sizes bound the IoU: a box k times the fracture's area scores at most 1/k.
    preds, samples = r.preds, r.samples
    out["median_area_fused"] = _median_share([p.fused_box for p in preds], box_sel, preds)
    out["median_area_lesion"] = _median_share([p.lesion_box for p in preds], box_sel, preds)
    out["median_area_gt"] = float(np.median([max(_area(b) for b in samples[i].boxes) / (preds[i].width * preds[i].height) for i in box_sel]))
    return out


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
                   note="FMA is off in this model: nothing is darkened")
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


def evaluate_predictions(samples: Sequence[Sample], preds: Sequence[Prediction], threshold: float,
                         hardware: Mapping[str, bool] | None = None) -> dict:
    """MSFM's figures (:func:`figures`, no baselines, no FMA suppression) of predictions."""
    return figures(build_records(samples, preds, threshold, hardware))


# --------------------------------------------------------------------------------------
# Metal hardware (SPEC §3b): FracAtlas flags it in meta.csv beside labels.csv.


def _path_key(path: str | Path) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(str(path))))


def read_hardware_flags(data: str | Path) -> tuple[dict[str, bool] | None, str]:
    """``hardware`` flags of a labels-CSV dataset: ``({image path key: has hardware}, note)``.

    Read from ``meta.csv`` beside the labels CSV (``file`` relative to the images folder,
    as in labels.csv; ``hardware`` 1/0); ``meta_*.csv`` files beside it (FracAtlas's
    ``meta_extra_normals.csv``) are read too. None, with the reason in the note, when there
    is no such file or no ``hardware`` column (other layouts: MURA, class folders, DICOM)."""
    p = Path(data)
    csv_path = p / "labels.csv" if p.is_dir() else p
    folder = csv_path.parent
    metas = [m for m in [folder / "meta.csv", *sorted(folder.glob("meta_*.csv"))] if m.is_file()]
    if not metas:
        return None, f"no meta.csv beside {csv_path.name}: metal hardware is unknown"
    base = folder / "images" if (folder / "images").is_dir() else folder
    flags: dict[str, bool] = {}
    for meta in metas:
        with open(meta, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "file" not in reader.fieldnames or "hardware" not in reader.fieldnames:
                continue
            for row in reader:
                v = (row.get("hardware") or "").strip().lower()
                if v in ("1", "1.0", "true", "yes"):
                    flags[_path_key(base / row["file"].strip())] = True
                elif v in ("0", "0.0", "false", "no"):
                    flags[_path_key(base / row["file"].strip())] = False
    if not flags:
        return None, f"{', '.join(m.name for m in metas)} has no hardware column: metal hardware is unknown"
    return flags, f"hardware flags from {', '.join(m.name for m in metas)}"


# --------------------------------------------------------------------------------------
# Baselines and FMA, on the same images.


@torch.inference_mode()
def plain_outputs(model: MSFM, samples: Sequence[Sample], device: torch.device, batch_size: int = 16) -> tuple[list[Sample], list[float], list[np.ndarray], list[tuple[int, int]]]:
    """Backbone + GAP + FC only. Returns the readable samples and, for each, the abnormal
    probability, the CAM of the predicted class (g, g) and (width, height); unreadable
    samples are left out."""
    model = model.to(device).eval()
    k = model.config.abnormal_index
    kept: list[Sample] = []
    probs, cams, sizes = [], [], []
    for i in range(0, len(samples), batch_size):
        ims = []
        for s in samples[i : i + batch_size]:
            try:
                ims.append(load_image(s.path))
                kept.append(s)
            except ImageLoadError:
                continue
        if not ims:
            continue
        x = make_batch(ims, model.config.input_size).to(device)
        f, logits = model.backbone(x)
        _, cfm, _ = activation_maps(f, model.backbone.fc.weight)
        pr = logits.float().softmax(-1)
        cls = pr.argmax(-1)
        cam = cfm[torch.arange(len(ims)), cls]
        probs += pr[:, k].cpu().tolist()
        cams += list(cam.cpu().numpy())
        sizes += [(im.width, im.height) for im in ims]
    return kept, probs, cams, sizes


def baseline_records(r: EvalRecords, probs: Sequence[float], cams: Sequence[np.ndarray | None], threshold: float, source: str) -> BaselineRecords:
    """Per-image baseline figures aligned with ``r``: ``probs``/``cams`` per record (NaN /
    None where the baseline could not read the image). The CAM box (:func:`cam_box`) and
    the CAM peak (:func:`map_peak`, cell centre) are in original pixels."""
    gt = _gt(r.samples)
    boxes = [cam_box(c, p.width, p.height) if c is not None else None for c, p in zip(cams, r.preds)]
    peaks = [map_peak(c, (0, 0, p.width, p.height)) if c is not None else None for c, p in zip(cams, r.preds)]
    ious, dists = localization_records(boxes, peaks, gt)
    return BaselineRecords(source=source, threshold=float(threshold), prob=np.asarray(probs, dtype=float), cam_iou=ious, cam_dist=dists)


def baseline_metrics(samples: Sequence[Sample], probs: Sequence[float], cams: Sequence[np.ndarray], sizes, threshold: float, source: str) -> dict:
    """The plain classifier and its CAM box on their own (no intervals): SPEC §3's baselines."""
    y = [s.label for s in samples]
    gt = _gt(samples)
    boxes = [cam_box(c, w, h) for c, (w, h) in zip(cams, sizes)]
    peaks = [map_peak(c, (0, 0, w, h)) for c, (w, h) in zip(cams, sizes)]
    return {"source": source, "plain_classifier": classification_metrics(y, probs, threshold), "cam_box": localization_metrics(boxes, peaks, gt)}


@torch.inference_mode()
def fma_records(model: MSFM, samples: Sequence[Sample], device: torch.device, batch_size: int = 16) -> FMARecords:
    """How much the model's FMA darkens each image and its GT boxes.

    The mask is the model's own, at inference: the frozen attention network on the S x S
    input, the config's θ and mode (:meth:`engine.model.fma.FMA.factor`); a pixel counts as
    darkened when its suppression factor is < 1. Measured on the network input, which is
    what the main stage sees (with ``crop_from="source"`` the look-closer crop applies the
    same mask, upsampled). GT boxes (original pixels) are read through the direct resize
    (:func:`engine.metrics.darkened_shares`). A model without FMA darkens nothing."""
    n = len(samples)
    fma = model.fma
    if fma is None:
        return FMARecords(False, None, None, np.where([bool(s.boxes) and s.label == 1 for s in samples], 0.0, np.nan), np.zeros(n))
    gt_share, img_share = np.full(n, np.nan), np.full(n, np.nan)
    size = model.config.input_size
    gts = _gt(samples)
    for i in range(0, n, batch_size):
        ims, at = [], []
        for j in range(i, min(n, i + batch_size)):
            try:
                ims.append(load_image(samples[j].path))
                at.append(j)
            except ImageLoadError:
                continue
        if not ims:
            continue
        x = make_batch(ims, size).to(device)
        # The image goes along: the "saturation" mode darkens only near-white pixels.
        darkened = (fma.factor(fma.attention(x), image=x) < 1).cpu().numpy()
        for k, j in enumerate(at):
            gt_share[j], img_share[j] = darkened_shares(darkened[k], gts[j], ims[k].width, ims[k].height)
    return FMARecords(True, float(fma.config.theta), float(fma.config.r), gt_share, img_share, getattr(fma.config, "mode", "paper"))


def _no_hardware(r: EvalRecords, note: str) -> dict:
    """Every figure again without the images that show metal hardware ("metal means
    fracture" is a shortcut a classifier can learn); images whose flag is unknown are left
    out too (counted)."""
    known = ~np.isnan(r.hardware)
    if not known.any():
        return {"note": note or "no image of the evaluation set has a hardware flag"}
    sel = np.flatnonzero(known & (r.hardware == 0))
    out = figures(r, sel)
    out["n_excluded_hardware"] = int((r.hardware == 1).sum())
    out["n_excluded_hardware_abnormal"] = int(((r.hardware == 1) & (r.y == 1)).sum())
    out["n_excluded_unknown"] = int((~known).sum())
    return out


def evaluate(
    predictor: Predictor,
    samples: Sequence[Sample],
    baseline: MSFM | None = None,
    baseline_threshold: float | None = None,
    progress: Progress | None = None,
    hardware: Mapping[str, bool] | None = None,
    hardware_note: str = "",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """Full evaluation: MSFM's figures plus both baselines and the FMA suppression, all
    with bootstrap intervals, again without metal-hardware images; JSON-ready.

    ``hardware``: {path key: has hardware} (:func:`read_hardware_flags`); without it the
    ``no_hardware`` block is left out and ``no_hardware_note`` says why.

    Images outside the model's intended use are counted (``n_out_of_scope``, listed in
    ``out_of_scope``) and, when ``predictor.enforce_scope``, left out of every metric;
    under the research override they are scored and ``research_use_only`` is set."""
    refused: list[OutOfScope] = []
    kept, preds, errors = predict_samples(predictor, samples, progress, out_of_scope=refused)
    if not kept:
        if refused and predictor.enforce_scope:
            raise ImageLoadError(refused[0].file, f"no image of the evaluation set is within the model's intended use (first: {refused[0].reason})")
        raise ImageLoadError(samples[0].path if samples else "<none>", "no image of the evaluation set could be read")
    thr = predictor.model.config.threshold
    rec = build_records(kept, preds, thr, hardware)
    if baseline is not None:
        base_kept, probs, cams, _ = plain_outputs(baseline, kept, predictor.device)
        by_path = {str(s.path): (p, c) for s, p, c in zip(base_kept, probs, cams)}
        got = [by_path.get(str(s.path), (float("nan"), None)) for s in kept]
        bthr = baseline_threshold if baseline_threshold is not None else baseline.config.threshold
        rec.baseline = baseline_records(rec, [g[0] for g in got], [g[1] for g in got], bthr, "plain classifier checkpoint")
    else:
        # No separately trained plain classifier: MSFM's main stage (backbone + GAP + FC on
        # the FMA'd image) stands in; its CAM is that of the predicted class.
        k = predictor.model.config.abnormal_index
        probs = [p.stages["main"] for p in preds]
        cams = [p.maps.cfm[k] if p.stages["main"] >= 0.5 else p.maps.cfm[1 - k] for p in preds]
        rec.baseline = baseline_records(rec, probs, cams, thr, "msfm main stage (no plain-classifier checkpoint given)")
    rec.fma = fma_records(predictor.model, kept, predictor.device, predictor.batch_size)
    out = figures(rec, resamples=resamples, seed=seed)
    if hardware is not None:
        out["no_hardware"] = _no_hardware(rec, hardware_note)
    else:
        out["no_hardware_note"] = hardware_note or "no hardware flags given: metal hardware is unknown"
    out["skipped"] = [{"path": p, "reason": r} for p, r in errors]
    out["n_out_of_scope"] = len(refused)
    out["out_of_scope"] = [{"path": o.file, "reason": o.reason} for o in refused]
    if refused and not predictor.enforce_scope:
        out["research_use_only"] = True  # out-of-scope images are inside these metrics
    out["model"] = {"sha256": predictor.info.sha256, "backbone": predictor.info.backbone, "input_size": predictor.info.input_size}
    return out


def tune_gamma(samples: Sequence[Sample], preds: Sequence[Prediction], grid: Sequence[float] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> tuple[float, dict]:
    """γ of eq. 11 that maximises the IoU >= 0.1 hit rate (then mean IoU) of the fused box
    on samples with GT boxes; returns (gamma, {gamma: metrics})."""
    from .boxes import fuse_boxes

    gt = [list(s.boxes) if s.label == 1 else [] for s in samples]
    if not any(gt):
        return float("nan"), {}
    boxes = torch.tensor([[w.box for w in p.windows] for p in preds], dtype=torch.float64)
    scores = torch.tensor([[w.score for w in p.windows] for p in preds], dtype=torch.float64)
    table = {}
    for g in grid:
        fused = fuse_boxes(boxes, scores, g).tolist()
        table[g] = localization_metrics(fused, None, gt)
    best = max(grid, key=lambda g: (table[g]["iou10"], table[g]["mean_iou"], -abs(g - 0.8)))
    return float(best), {str(k): v for k, v in table.items()}


__all__ = ["evaluate", "evaluate_predictions", "figures", "build_records", "read_hardware_flags", "predict_samples", "tune_gamma",
           "best_kappa_threshold", "plain_outputs", "baseline_metrics", "baseline_records", "fma_records"]
