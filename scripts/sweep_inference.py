"""Measure an inference-time configuration override of a checkpoint on validation data (issue 17.4).

    .venv/bin/python scripts/sweep_inference.py resources/models/default.pt \\
        --labels ../shared/data/xray/labels.csv --split val \\
        [--set object_size=640] [--set lesion_windows=true] [--set window_score=class] \\
        [--set fma.mode=saturation] [--tune-tau] [--retune-threshold] [--name TEXT] [--header]

The checkpoint's weights are loaded unchanged into an MSFM built from its config with the
``--set`` overrides (``key=value``, value parsed as JSON when it can be, e.g. ``true``, ``640``,
else kept as a string; ``fma.KEY`` reaches the FMA config). One pass of the engine's own
inference path over the whole split gives:

- AUC and Cohen's κ (at the config's decision threshold) over all images of the split;
- on the fractured images with ground-truth boxes (``boxes.csv`` beside the labels):
  ``pointing`` (the peak of E inside a GT box, edges included), ``pointing15`` (within 15
  source pixels), lesion-box IoU >= 0.1 / 0.3 / 0.5 hit rates at the config's ``lesion_tau``,
  and the region (eq. 11 fused box) IoU >= 0.1 / 0.3 hit rates — the same scoring as
  ``scripts/tune_lesion_tau.py`` (its functions are reused);
- the wall time per image of the prediction (loading included).

``--retune-threshold`` re-tunes the decision threshold for κ on the split, as training does
(an override that moves probabilities leaves the stored one tuned for other probabilities);
κ is then read at the new threshold, and ``--write`` stores it.

It prints one markdown table row (``--header`` prints the header first). With ``--tune-tau``
it also re-reads the lesion box for every τ of tune_lesion_tau's grid from the stored maps and
prints that table and the τ its rule picks. Only a validation split may be used: train and
test are refused.

``--write OUT`` also writes a copy of the checkpoint with the overridden config (this is how
the shipped default's inference settings are set). As in ``scripts/calibrate_model.py`` it is
written to a temporary file and moved into place only after its weights equal the original's
bit for bit and its config is the measured one. ``meta["calibration"]`` is kept only when the
overrides cannot move a probability (:data:`LOCALISATION_ONLY`: lesion windows ranked on
their own, ``lesion_tau``) and the probabilities of ``--check`` validation images are identical
to the original's; otherwise it is dropped, and the copy must be recalibrated with
``scripts/calibrate_model.py`` before it is shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import cohen_kappa_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_lesion_tau import DEFAULT_GRID, RULE, best_iou, format_table, pick, score_tau

from engine.config import ModelConfig
from engine.data import load_samples
from engine.evaluation.evaluate import predict_samples
from engine.evaluation.metrics import best_kappa_threshold, classification_metrics
from engine.infer import Predictor
from engine.io import load_image
from engine.model.checkpoint import load_checkpoint, read_checkpoint, rewrite_checkpoint
from engine.model.msfm import MSFM
from engine.types import ModelInfo, Prediction

REFUSED_SPLITS = ("train", "test")
#: Overrides that change only the localisation read-out, never a probability: lesion-sized
#: windows are left out of the parts probability and the fused box (engine.infer), and
#: ranking only them leaves the configured windows as they were.
LOCALISATION_ONLY = ("lesion_windows", "lesion_windows_kept", "lesion_window_score", "lesion_tau")
HEADER = ("| setting | AUC | κ | pointing | pointing15 | lesion IoU≥0.1 | ≥0.3 | ≥0.5 | region IoU≥0.1 | ≥0.3 | s/image |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def parse_value(text: str) -> Any:
    """``true`` -> True, ``640`` -> 640, ``null`` -> None, ``[1,2]`` -> [1, 2]; anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: ModelConfig, overrides: list[str]) -> ModelConfig:
    """``config`` with ``key=value`` overrides (``fma.key`` for the FMA config); validated by the dataclasses."""
    d = config.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        target, name = (d["fma"], key[4:]) if key.startswith("fma.") else (d, key)
        if name not in target:
            raise SystemExit(f"--set {item!r}: unknown key {key!r}")
        target[name] = parse_value(value)
    return ModelConfig.from_dict(d)


def build_model(checkpoint: Path, overrides: list[str], device: str) -> tuple[MSFM, ModelInfo, ModelConfig]:
    """The checkpoint's weights, bit for bit, in a model of the overridden config."""
    ck = load_checkpoint(checkpoint, device)
    cfg = apply_overrides(ck.config, overrides)
    model = MSFM(cfg, pretrained="none")
    model.load_state_dict(ck.model.state_dict(), strict=True)
    info = ModelInfo(sha256=ck.sha256, backbone=cfg.backbone, input_size=cfg.input_size, name=str(ck.meta.get("name", "MSFM")))
    return model.eval(), info, cfg


def localisation(preds: list[Prediction], gts: list[np.ndarray], tau: float) -> dict[str, float]:
    """Pointing and lesion-box rates (tune_lesion_tau.score_tau) plus region (fused box) rates."""
    out = score_tau(preds, gts, tau)
    region = np.array([best_iou(p.fused_box, g) for p, g in zip(preds, gts)])
    out.update(region10=float((region >= 0.1).mean()), region30=float((region >= 0.3).mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv with a split column and boxes.csv beside it")
    ap.add_argument("--split", default="val", help="validation split (train and test are refused)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override; repeatable")
    ap.add_argument("--name", help="the row's label (default: the overrides)")
    ap.add_argument("--header", action="store_true", help="print the table header first")
    ap.add_argument("--tune-tau", action="store_true", help="also tabulate τ on the stored maps and print the τ tune_lesion_tau's rule picks")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--write", type=Path, help="also write a copy of the checkpoint with the overridden config here (may name the checkpoint itself)")
    ap.add_argument("--retune-threshold", action="store_true",
                    help="re-tune the decision threshold for κ on the split (as training does) and store it in a --write copy")
    ap.add_argument("--check", type=int, default=8, help="validation images on which --write compares the copy with the original")
    args = ap.parse_args(argv)
    if args.split in REFUSED_SPLITS:
        ap.error(f"--split {args.split}: validation data only (never {' or '.join(REFUSED_SPLITS)})")

    model, info, cfg = build_model(args.checkpoint, args.overrides, args.device)
    predictor = Predictor(model, info, args.device, args.batch_size, enforce_scope=False)  # the split was chosen by hand
    samples = load_samples(args.labels).split(args.split)
    def progress(done, total):
        return print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    kept, preds, errors = predict_samples(predictor, samples, progress)
    per_image = (time.perf_counter() - t0) / max(1, len(preds))
    print(file=sys.stderr)
    for path, reason in errors:
        print(f"skipped {path}: {reason}", file=sys.stderr)

    y = np.array([s.label for s in kept])
    prob = np.array([p.probability for p in preds])
    auc = float(roc_auc_score(y, prob))
    if args.retune_threshold:
        # A probability-moving override leaves the stored threshold κ-optimal for other
        # probabilities; training picks it on val with this same function.
        stored = cfg.threshold
        cfg = dataclasses.replace(cfg, threshold=best_kappa_threshold(y, prob))
        print(f"threshold re-tuned for κ on {args.split}: {stored:.4f} -> {cfg.threshold:.4f} "
              f"(κ {cohen_kappa_score(y, (prob >= stored).astype(int)):.3f} -> {cohen_kappa_score(y, (prob >= cfg.threshold).astype(int)):.3f})",
              file=sys.stderr)
    kappa = float(cohen_kappa_score(y, (prob >= cfg.threshold).astype(int)))
    loc_pairs = [(p, np.asarray(s.boxes, dtype=np.float64).reshape(-1, 4)) for s, p in zip(kept, preds) if s.label == 1 and s.boxes]
    lp, gts = [p for p, _ in loc_pairs], [g for _, g in loc_pairs]
    loc = localisation(lp, gts, cfg.lesion_tau)

    name = args.name or (", ".join(args.overrides) or "as stored")
    if args.header:
        print(HEADER)
    print(f"| {name} (τ {cfg.lesion_tau:.2f}) | {auc:.3f} | {kappa:.3f} | {loc['pointing']:.3f} | {loc['pointing15']:.3f} | {loc['iou10']:.3f} | "
          f"{loc['iou30']:.3f} | {loc['iou50']:.3f} | {loc['region10']:.3f} | {loc['region30']:.3f} | {per_image:.2f} |")
    metrics = {**classification_metrics(y, prob, cfg.threshold), "threshold": cfg.threshold, "gamma": cfg.gamma,
               "source": f"{args.labels.name}, split={args.split}", "measured_by": "scripts/sweep_inference.py",
               "localization": {"n_images": len(lp), "pointing": loc["pointing"], "pointing15": loc["pointing15"], "peak": "evidence",
                                "lesion": {k: loc[k] for k in ("iou10", "iou30", "iou50", "mean_iou")},
                                "region": {"iou10": loc["region10"], "iou30": loc["region30"]}}}
    record: dict[str, Any] = {"overrides": args.overrides, "config": cfg.to_dict(), "n": len(preds), "n_boxes": len(lp), "auc": auc,
                              "kappa": kappa, "threshold": cfg.threshold, "localisation": loc, "seconds_per_image": per_image,
                              "metrics": metrics, "probabilities": prob.tolist()}
    if args.tune_tau:
        table = [score_tau(lp, gts, float(t)) for t in DEFAULT_GRID]
        chosen = pick(table)
        print(format_table(table, chosen["tau"], None), file=sys.stderr)
        print(f"chosen tau = {chosen['tau']:.2f} ({RULE})", file=sys.stderr)
        record["tau_table"], record["tau_chosen"] = table, chosen["tau"]
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.write:
        summary = {k: v for k, v in record.items() if k not in ("probabilities", "config")}
        write_copy(args.checkpoint, args.write, cfg, args.overrides, summary, [load_image(s.path) for s in kept[: max(1, args.check)]], args.device)
    return 0


def write_copy(original: Path, out: Path, cfg: ModelConfig, overrides: list[str], record: dict, check_images: list, device: str) -> None:
    """Write ``original`` with config ``cfg`` to ``out`` (write, verify, then move into place)."""
    ck = load_checkpoint(original, device)
    keys = {o.partition("=")[0] for o in overrides} | ({"threshold"} if cfg.threshold != ck.config.threshold else set())
    same_probs = keys <= set(LOCALISATION_ONLY) and not (cfg.lesion_windows and cfg.lesion_window_score is None and cfg.window_score != ck.config.window_score)
    meta = {**ck.meta, "inference_settings": {"overrides": overrides, "measured": {k: v for k, v in record.items() if k != "metrics"}, "set_from_sha256": ck.sha256, "script": "scripts/sweep_inference.py"}}
    if not same_probs:
        meta.pop("calibration", None)  # measured on other probabilities: recalibrate the copy
        # The validation figures the app shows beside the model (Manage models, About) are the
        # file's own: training's stay, named as such.
        meta["metrics_as_trained"] = ck.meta.get("metrics")
        meta["metrics"] = record["metrics"]
    stored = read_checkpoint(original)["state_dict"]
    model = MSFM(cfg, pretrained="none")
    model.load_state_dict(ck.model.state_dict(), strict=True)

    def check(tmp: Path) -> None:
        b = read_checkpoint(tmp)
        if ModelConfig.from_dict(json.loads(b["config"])) != cfg:
            raise SystemExit("the copy's configuration is not the measured one; not written")
        sb = b["state_dict"]
        if stored.keys() != sb.keys() or any(stored[k].dtype != sb[k].dtype or not torch.equal(stored[k], sb[k]) for k in stored):
            raise SystemExit("the copy's weights differ from the original's; not written")
        pa = Predictor.from_checkpoint(original, device, enforce_scope=False).predict_batch(check_images)
        pb = Predictor.from_checkpoint(tmp, device, enforce_scope=False).predict_batch(check_images)
        dp = max(abs(x.probability - y.probability) for x, y in zip(pa, pb))
        print(f"copy vs original on {len(check_images)} validation images: max |Δp| = {dp:.3g}, weights identical", file=sys.stderr)
        if same_probs and dp != 0.0:
            raise SystemExit(f"localisation-only overrides moved a probability (max |Δp| {dp:.3g}); not written")

    sha = rewrite_checkpoint(original, out, model, meta, cfg, check)
    note = "calibration kept (probabilities unchanged)" if same_probs else "calibration DROPPED: run scripts/calibrate_model.py on the copy"
    print(f"wrote {out} (sha256 {sha}; was {ck.sha256}); {note}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
