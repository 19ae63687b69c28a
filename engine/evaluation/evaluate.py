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
  rank-1 window);
- ``funnel``: where the fracture is lost on its way through the stages: the share of
  fractured images whose look-closer crop, some part window, the rank-1 window contain the
  centre of a GT box, and pointing when some window holds it and when none does.

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..bootstrap import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from ..data.sources import Sample
from ..errors import ImageLoadError
from ..infer import Predictor
from ..io import load_image
from ..model.msfm import MSFM
from ..model.preprocess import make_batch
from ..model.stage1 import activation_maps
from ..scope import OutOfScope, check_scope
from ..types import LoadedImage, Prediction
from .figures import (  # noqa: F401  (the figures live there; these names stay importable here)
    BaselineRecords,
    EvalRecords,
    FMARecords,
    _gt,
    _path_key,
    build_records,
    cam_peak,
    figures,
    finding_peak,
    msfm_peak,
    window1_centre,
)
from .metrics import (
    best_kappa_threshold,
    cam_box,
    classification_metrics,
    darkened_shares,
    localization_metrics,
    localization_records,
    map_peak,
)

#: ``baselines.source`` when the plain classifier came from its own checkpoint (``--baseline``).
PLAIN_BASELINE_SOURCE = "plain classifier checkpoint"

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
            if reason is not None and out_of_scope is not None:
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


def evaluate_predictions(samples: Sequence[Sample], preds: Sequence[Prediction], threshold: float,
                         hardware: Mapping[str, bool] | None = None) -> dict:
    """MSFM's figures (:func:`figures`, no baselines, no FMA suppression) of predictions."""
    return figures(build_records(samples, preds, threshold, hardware))


# --------------------------------------------------------------------------------------
# Metal hardware (SPEC §3b): FracAtlas flags it in meta.csv beside labels.csv.


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
    (:func:`engine.evaluation.metrics.darkened_shares`). A model without FMA darkens nothing."""
    n = len(samples)
    fma = model.fma
    if fma is None or fma.config.train_only:  # train_only (the mild variant): predictions see the image as it is
        return FMARecords(False, None, None, np.where([bool(s.boxes) and s.label == 1 for s in samples], 0.0, np.nan), np.zeros(n),
                          "train_only" if fma is not None else None)
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
        rec.baseline = baseline_records(rec, [g[0] for g in got], [g[1] for g in got], bthr, PLAIN_BASELINE_SOURCE)
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
    from ..boxes import fuse_boxes

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
