"""Tune the lesion-box threshold τ (``ModelConfig.lesion_tau``, SPEC §3b) on validation boxes.

    .venv/bin/python scripts/tune_lesion_tau.py resources/models/default.pt \\
        --labels ../shared/data/xray/labels.csv --split val [--out OUT.pt] [--dry-run]

Predicts the validation split once with the engine's own inference path, keeping each
image's evidence map E; then, for every τ of the grid (default 0.20, 0.25, ..., 0.90), reads
the lesion box out of the stored maps (:func:`engine.evidence.peak_and_box`, no new forward
pass) and scores it on the fractured images that have ground-truth boxes (``boxes.csv``
beside the labels): the hit rates of lesion-box IoU >= 0.1 / 0.3 / 0.5 with any GT box, and
the pointing game, strict (the peak inside a GT box, edges included) and within 15 source
pixels of one (``pointing15``, Zhang et al. 2016). The peak does not depend on τ, so pointing
is the same on every row; it is printed for the record.

**Rule.** τ maximises the mean of the IoU >= 0.1 and IoU >= 0.3 hit rates (0.1 says the box
is on the lesion, 0.3 that it is also about the lesion's size; neither alone decides). Ties go
to the higher IoU >= 0.5 rate, then to the τ closest to 0.5 (the SPEC default).

The copy of the checkpoint gets ``config.lesion_tau`` and ``meta["lesion_tau_tuning"]`` (the
table, the rule, the data); the weights (in their stored dtype), the rest of the config and of
the metadata, including ``meta["calibration"]`` (valid as long as the decision threshold is
unchanged, which is checked), are kept. As in ``scripts/calibrate_model.py``, it is written to
a temporary file and moved into place only after its weights equal the original's bit for
bit, its probabilities on ``--check`` validation images are identical and its lesion boxes
there are the tuned τ's. Only a validation split may be used: tuning on test would spoil it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from engine.config import ModelConfig
from engine.data import load_samples
from engine.errors import ImageLoadError
from engine.evidence import peak_and_box
from engine.infer import Predictor
from engine.io import load_image
from engine.model.calibration import Calibration
from engine.model.checkpoint import load_checkpoint, read_checkpoint, rewrite_checkpoint
from engine.types import ModelInfo, Prediction

REFUSED_SPLITS = ("train", "test")
DEFAULT_GRID = tuple(round(0.2 + 0.05 * i, 2) for i in range(15))  # 0.20 ... 0.90
POINTING_TOLERANCE = 15.0  # source pixels, the standard pointing game's tolerance
RULE = "max mean(IoU>=0.1 rate, IoU>=0.3 rate); ties: higher IoU>=0.5 rate, then tau closest to 0.5"


def point_hits(peak: tuple[float, float], boxes: np.ndarray, tol: float = 0.0) -> bool:
    """Whether ``peak`` (x, y) lies within ``tol`` source pixels of one of ``boxes`` (N, 4) xyxy (edges count)."""
    x, y = peak
    dx = np.maximum(np.maximum(boxes[:, 0] - x, x - boxes[:, 2]), 0.0)
    dy = np.maximum(np.maximum(boxes[:, 1] - y, y - boxes[:, 3]), 0.0)
    return bool((np.hypot(dx, dy) <= tol).any())


def best_iou(box: tuple[float, float, float, float], boxes: np.ndarray) -> float:
    """Highest IoU of ``box`` (xyxy) with any of ``boxes`` (N, 4) xyxy, same pixels."""
    return float(box_iou(torch.tensor([box], dtype=torch.float64), torch.as_tensor(boxes, dtype=torch.float64)).max())


def image_scores(maps: list[np.ndarray], sizes: list[tuple[int, int]], gts: list[np.ndarray], tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image, for one τ: the lesion box's best IoU, whether the peak is in a GT box, and
    whether it is within :data:`POINTING_TOLERANCE` px of one ((N,) float, bool, bool), over
    evidence maps (He, We) of images of ``sizes`` (W, H) and their GT boxes (N, 4) xyxy source pixels."""
    ious, strict, near = [], [], []
    for e, (w, h), g in zip(maps, sizes, gts):
        peak, box, _ = peak_and_box(e, w, h, tau)
        ious.append(best_iou(box, g))
        strict.append(point_hits(peak, g))
        near.append(point_hits(peak, g, POINTING_TOLERANCE))
    return np.array(ious), np.array(strict, dtype=bool), np.array(near, dtype=bool)


def score_maps(maps: list[np.ndarray], sizes: list[tuple[int, int]], gts: list[np.ndarray], tau: float) -> dict[str, float]:
    """Lesion-box IoU hit rates and pointing for one τ (:func:`image_scores`, averaged)."""
    iou, strict, near = image_scores(maps, sizes, gts, tau)
    return {
        "tau": tau, "pointing": float(np.mean(strict)), "pointing15": float(np.mean(near)),
        "iou10": float((iou >= 0.1).mean()), "iou30": float((iou >= 0.3).mean()), "iou50": float((iou >= 0.5).mean()),
        "mean_iou": float(iou.mean()),
    }


def score_tau(preds: list[Prediction], gts: list[np.ndarray], tau: float) -> dict[str, float]:
    """:func:`score_maps` of the predictions' own evidence maps."""
    return score_maps([p.maps.evidence for p in preds], [(p.width, p.height) for p in preds], gts, tau)


def pick(table: list[dict[str, float]]) -> dict[str, float]:
    """The row the documented rule (:data:`RULE`) chooses."""
    return max(table, key=lambda r: (round((r["iou10"] + r["iou30"]) / 2, 9), round(r["iou50"], 9), -abs(r["tau"] - 0.5)))


def format_table(table: list[dict[str, float]], chosen: float, fused: dict[str, float] | None) -> str:
    lines = ["tau   pointing pointing15 IoU>=0.1 IoU>=0.3 IoU>=0.5 mean IoU"]
    for r in table:
        mark = "  <- chosen" if r["tau"] == chosen else ""
        lines.append(f"{r['tau']:.2f}  {r['pointing']:.3f}    {r['pointing15']:.3f}      {r['iou10']:.3f}    {r['iou30']:.3f}    "
                     f"{r['iou50']:.3f}    {r['mean_iou']:.3f}{mark}")
    if fused:
        lines.append(f"fused box (eq. 11, for comparison): IoU>=0.1 {fused['iou10']:.3f}, >=0.3 {fused['iou30']:.3f}, >=0.5 {fused['iou50']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv with a split column and boxes.csv beside it")
    ap.add_argument("--split", default="val", help="the validation split to tune on (default val; train and test are refused)")
    ap.add_argument("--out", type=Path, help="where to write the tuned copy (default: CHECKPOINT.lesion.pt beside it; may name the checkpoint itself)")
    ap.add_argument("--grid", type=float, nargs="+", default=list(DEFAULT_GRID), help="the τ values to try (default 0.20 … 0.90 by 0.05)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--check", type=int, default=8, help="validation images on which the copy must give identical outputs")
    ap.add_argument("--dry-run", action="store_true", help="print the table and the choice, write nothing")
    ap.add_argument("--json", type=Path, help="also write the table and the choice as JSON here")
    args = ap.parse_args(argv)

    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: tune on validation data only (never {' or '.join(REFUSED_SPLITS)})")
    if any(not 0.0 <= t <= 1.0 for t in args.grid):
        ap.error("--grid values must lie in [0, 1]")
    samples = [s for s in load_samples(args.labels).split(args.split) if s.label == 1 and s.boxes]
    if not samples:
        ap.error(f"{args.labels}: no fractured images with boxes in split {args.split!r}")

    from engine.device import resolve_device

    args.device = str(resolve_device(args.device))  # "auto" as the ablation passes it
    ck = load_checkpoint(args.checkpoint, args.device)
    info = ModelInfo(sha256=ck.sha256, backbone=ck.config.backbone, input_size=ck.config.input_size, name=str(ck.meta.get("name", "MSFM")))
    predictor = Predictor(ck.model, info, args.device, args.batch_size, enforce_scope=False)  # the split was chosen by hand
    preds: list[Prediction] = []
    gts: list[np.ndarray] = []
    images = []
    for i, s in enumerate(samples):
        try:
            images.append(load_image(s.path))
        except ImageLoadError as exc:
            print(f"skipped {s.path}: {exc.reason}", file=sys.stderr)
            continue
        gts.append(np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4))
        if len(images) == args.batch_size or i == len(samples) - 1:
            preds.extend(predictor.predict_batch(images))
            images = []
            print(f"\r{len(preds)}/{len(samples)} fractured {args.split} images", end="", file=sys.stderr, flush=True)
    if images:
        preds.extend(predictor.predict_batch(images))
    print(file=sys.stderr)
    if any(p.maps.evidence is None for p in preds):
        raise SystemExit("the predictions carry no evidence map; this engine cannot tune the lesion box")

    table = [score_tau(preds, gts, float(t)) for t in sorted(args.grid)]
    chosen = pick(table)
    fused_iou = np.array([best_iou(p.fused_box, g) for p, g in zip(preds, gts)])
    fused = {f"iou{k}": float((fused_iou >= k / 100).mean()) for k in (10, 30, 50)}
    print(f"{len(preds)} fractured {args.split} images with boxes ({args.labels}); was tau {ck.config.lesion_tau}")
    print(format_table(table, chosen["tau"], fused))
    print(f"chosen tau = {chosen['tau']:.2f} ({RULE})")
    record = {"tau": chosen["tau"], "rule": RULE, "source": f"{args.labels.name}, split={args.split}", "n_images": len(preds),
              "table": table, "fused_box": fused, "tuned_from_sha256": ck.sha256}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.dry_run:
        return 0

    out = args.out or args.checkpoint.with_name(args.checkpoint.stem + ".lesion.pt")
    config = ck.config.with_(lesion_tau=float(chosen["tau"]))
    meta = {**ck.meta, "lesion_tau_tuning": record}
    check_images = [load_image(s.path) for s in load_samples(args.labels).split(args.split)[: max(1, args.check)]]
    sha = rewrite_checkpoint(args.checkpoint, out, ck.model, meta, config,
                             lambda tmp: verify(args.checkpoint, tmp, check_images, args.device, float(chosen["tau"])))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {sha}; was {ck.sha256})")
    return 0


def verify(original: Path, copy: Path, images: list, device: str, tau: float) -> None:
    """Raise unless ``copy`` differs from ``original`` only in ``lesion_tau`` (= ``tau``) and
    metadata: same weights bit for bit, same other config, a calibration that still applies,
    identical probabilities on ``images`` and lesion boxes read at ``tau``."""
    a, b = read_checkpoint(original), read_checkpoint(copy)
    # Compared as configurations, not as stored dicts: a file written before an option existed
    # lacks its key, which reads back as the option's default.
    ca, cb = ModelConfig.from_dict(json.loads(a["config"])), ModelConfig.from_dict(json.loads(b["config"]))
    if cb.lesion_tau != tau or ca.with_(lesion_tau=tau) != cb:
        raise SystemExit("the copy's configuration differs from the original's in more than lesion_tau; not written")
    sa, sb = a["state_dict"], b["state_dict"]
    if sa.keys() != sb.keys() or any(sa[k].dtype != sb[k].dtype or not torch.equal(sa[k], sb[k]) for k in sa):
        raise SystemExit("the copy's weights differ from the original's; not written")
    ma, mb = json.loads(a["meta"]), json.loads(b["meta"])
    if ma.get("calibration") != mb.get("calibration"):
        raise SystemExit("the copy lost or changed the calibration; not written")
    if "calibration" in mb and not Calibration.for_checkpoint(mb, cb.threshold).calibrated:
        raise SystemExit("the copy's calibration no longer matches its decision threshold; not written")
    pa = Predictor.from_checkpoint(original, device, enforce_scope=False).predict_batch(images)
    pb = Predictor.from_checkpoint(copy, device, enforce_scope=False).predict_batch(images)
    dp = max(abs(x.probability - y.probability) for x, y in zip(pa, pb))
    want = [peak_and_box(x.maps.evidence, x.width, x.height, tau)[1] for x in pa]
    boxes_ok = all(np.allclose(y.lesion_box, w) for y, w in zip(pb, want))
    print(f"copy vs original on {len(images)} validation images: max |Δp| = {dp:.3g}, weights identical, lesion boxes at tau {tau}: {boxes_ok}")
    if dp != 0.0 or not boxes_ok:
        raise SystemExit(f"the copy's outputs moved (max |Δp| {dp:.3g}, lesion boxes ok: {boxes_ok}); not written")


if __name__ == "__main__":
    raise SystemExit(main())
