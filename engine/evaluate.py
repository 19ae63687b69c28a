"""Evaluation of a model on labelled samples, with the baselines beside it (SPEC §3, §5).

MSFM is scored on its ensemble probability at the checkpoint's threshold and on its fused
box; pointing uses the peak of the object-stage activation map ``A_o`` (the map the
windows are chosen from), mapped through the object box to original pixels. Two other
readings of "the peak" are reported beside it: ``pointing_cam`` (peak of the main stage's
abnormal-class CAM) and ``pointing_window1`` (centre of the rank-1 part window).

Baselines, same data and backbone: a **plain classifier** (backbone + GAP + FC, from a
checkpoint trained with ``msfm train --model plain``; without one, MSFM's own main stage
stands in and the JSON says so) and the **CAM box** of that classifier (CAM of the
predicted class, 0.2 x max, largest component).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .data.sources import Sample
from .errors import ImageLoadError
from .infer import Predictor
from .io import load_image
from .metrics import (
    best_kappa_threshold, cam_box, classification_metrics, grouped_metrics, localization_metrics, map_peak, study_level,
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
    return map_peak(p.maps.a_object, p.object_box)


def _area(b: Sequence[float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def cam_peak(p: Prediction) -> tuple[float, float]:
    """Peak of the main stage's abnormal-class CAM over the whole image (original pixels)."""
    return map_peak(p.maps.cam, (0, 0, p.width, p.height))


def window1_centre(p: Prediction) -> tuple[float, float]:
    """Centre of the highest-scoring part window (original pixels)."""
    x0, y0, x1, y1 = p.windows[0].box
    return ((x0 + x1) / 2, (y0 + y1) / 2)


def evaluate_predictions(samples: Sequence[Sample], preds: Sequence[Prediction], threshold: float) -> dict:
    """SPEC §5 metrics of MSFM predictions (no baselines)."""
    y = [s.label for s in samples]
    prob = [p.probability for p in preds]
    out = classification_metrics(y, prob, threshold)
    out["stages"] = {
        k: classification_metrics(y, [p.stages[k] for p in preds], threshold) for k in ("main", "object", "parts")
    }
    out["per_body_part"] = grouped_metrics(y, prob, [s.body_part for s in samples], threshold)
    studies = [s.study for s in samples]
    if any(studies):
        out["study_level"] = study_level(y, prob, studies, threshold)
    gt = [list(s.boxes) if s.label == 1 else [] for s in samples]
    fused = [p.fused_box for p in preds]
    out["localization"] = localization_metrics(fused, [msfm_peak(p) for p in preds], gt)
    if out["localization"].get("n_images"):
        # The other points SPEC's "peak of the activation/CAM map" can mean, for comparison.
        out["localization"]["pointing_cam"] = localization_metrics(fused, [cam_peak(p) for p in preds], gt)["pointing"]
        out["localization"]["pointing_window1"] = localization_metrics(fused, [window1_centre(p) for p in preds], gt)["pointing"]
        # Box sizes bound the IoU: a box k times the fracture's area scores at most 1/k.
        has = [i for i, g in enumerate(gt) if g]
        out["localization"]["median_area_fused"] = float(np.median([_area(preds[i].fused_box) / (preds[i].width * preds[i].height) for i in has]))
        out["localization"]["median_area_gt"] = float(np.median([max(_area(b) for b in gt[i]) / (preds[i].width * preds[i].height) for i in has]))
    out["localization_object_box"] = localization_metrics([p.object_box for p in preds], None, gt)
    return out


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


def baseline_metrics(samples: Sequence[Sample], probs: Sequence[float], cams: Sequence[np.ndarray], sizes, threshold: float, source: str) -> dict:
    y = [s.label for s in samples]
    gt = [list(s.boxes) if s.label == 1 else [] for s in samples]
    boxes = [cam_box(c, w, h) for c, (w, h) in zip(cams, sizes)]
    peaks = [map_peak(c, (0, 0, w, h)) for c, (w, h) in zip(cams, sizes)]
    return {
        "source": source,
        "plain_classifier": classification_metrics(y, probs, threshold),
        "cam_box": localization_metrics(boxes, peaks, gt),
    }


def evaluate(
    predictor: Predictor,
    samples: Sequence[Sample],
    baseline: MSFM | None = None,
    baseline_threshold: float | None = None,
    progress: Progress | None = None,
) -> dict:
    """Full evaluation: MSFM metrics plus both baselines, JSON-ready.

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
    out = evaluate_predictions(kept, preds, thr)
    if baseline is not None:
        base_kept, probs, cams, sizes = plain_outputs(baseline, kept, predictor.device)
        bthr = baseline_threshold if baseline_threshold is not None else baseline.config.threshold
        out["baselines"] = baseline_metrics(base_kept, probs, cams, sizes, bthr, "plain classifier checkpoint")
    else:
        # No separately trained plain classifier: MSFM's main stage (backbone + GAP + FC on
        # the FMA'd image) stands in; its CAM is that of the predicted class.
        k = predictor.model.config.abnormal_index
        probs = [p.stages["main"] for p in preds]
        cams = [p.maps.cfm[k] if p.stages["main"] >= 0.5 else p.maps.cfm[1 - k] for p in preds]
        out["baselines"] = baseline_metrics(kept, probs, cams, [(p.width, p.height) for p in preds], thr, "msfm main stage (no plain-classifier checkpoint given)")
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


__all__ = ["evaluate", "evaluate_predictions", "predict_samples", "tune_gamma", "best_kappa_threshold", "plain_outputs", "baseline_metrics"]
