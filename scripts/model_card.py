"""Write resources/models/MODEL_CARD.md from a checkpoint and its ``msfm evaluate`` JSON.

    .venv/bin/python scripts/model_card.py CHECKPOINT METRICS.json [--out resources/models/MODEL_CARD.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.calibration import Calibration
from engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def calibration_lines(cal: Calibration) -> list[str]:
    """The "Operating points" section: what the app's verdicts and map colours rest on."""
    if not cal.calibrated:
        return ["## Operating points", "",
                f"Not calibrated: one threshold ({cal.default.threshold:.3f}), a borderline band of ±0.05 around it and maps "
                "scaled to each image's own range. Add a calibration with `scripts/calibrate_model.py`.", ""]
    lines = [
        "## Operating points (calibrated on validation data only)",
        "",
        f"Measured on {cal.source}: {cal.n} images, {cal.n_abnormal} abnormal and {cal.n_normal} normal "
        "(`scripts/calibrate_model.py`; a training run stores the same in its `best.pt`, `engine/calibration.py`). "
        "A point flags an image when its abnormal probability p ≥ the threshold.",
        "",
        "| operating point | threshold | val sensitivity | val specificity | how it was chosen |",
        "|---|---|---|---|---|",
    ]
    why = {"sensitive": "highest threshold with val sensitivity ≥ 90 % (the app's dotted \"possible\")",
           "default": "the model's threshold, κ-optimal on val (the label in exports)",
           "specific": "lowest threshold with val specificity ≥ 90 %"}
    for op in cal.points:
        lines.append(f"| {op.name} | {op.threshold:.3f} | {pct(op.sensitivity)} | {pct(op.specificity)} | {why[op.name]} |")
    lo, hi = cal.borderline
    half = (hi - lo) / 2
    lines += [
        "",
        f"- **Borderline band {lo:.3f}–{hi:.3f}** (threshold ± {half:.3f}): the app calls a probability in this band "
        "\"borderline\", never abnormal or normal. The half-width is half the bootstrap 95 % interval of the κ-optimal threshold "
        f"on val (how far the threshold itself moves on another sample of {cal.n} images), clipped to 0.02–0.10."
        + (f" The specific point ({cal.specific.threshold:.3f}) lies inside the band: on this validation set the threshold's own "
           "uncertainty is wider than the step from the default to the specific point." if lo <= cal.specific.threshold <= hi else ""),
        f"- **Known miss rate at the threshold: {pct(cal.miss_rate)}** of abnormal val images fall below it (1 − sensitivity).",
    ]
    if cal.map_scale:
        scales = "; ".join(f"{k} {lo_:.4g} to {hi_:.4g}" for k, (lo_, hi_) in cal.map_scale.items())
        lines.append(f"- **Fixed map scale** ({scales}): the median and the 99th percentile of all grid cells of all val images. "
                     "Every image is coloured on this scale, so a normal image's map stays mostly transparent and only a strong "
                     "activation reaches full colour.")
    else:
        lines.append("- No fixed map scale: maps are coloured over each image's own range.")
    lines.append(f"- Method, as stored: {cal.method}")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("metrics")
    ap.add_argument("--out", default=str(REPO / "resources" / "models" / "MODEL_CARD.md"))
    ap.add_argument("--extra", help="markdown inserted before the limitations (experiments, comparisons)")
    args = ap.parse_args()
    ck = load_checkpoint(args.checkpoint)
    m = json.loads(Path(args.metrics).read_text())
    tc = ck.meta.get("train_config", {})
    data = ck.meta.get("data", {})
    loc, b = m.get("localization", {}), m.get("baselines", {})
    plain, cam = b.get("plain_classifier", {}), b.get("cam_box", {})
    lines = [
        f"# Model card: {ck.meta.get('name', 'MSFM')}",
        "",
        "**Intended use: decision support for reading musculoskeletal radiographs, not a diagnosis.** "
        "A clinician reads every image; the model's label, probability and boxes point at where to look.",
        "",
        "## Model",
        f"- MSFM (Kumar et al., ICCV 2023 workshops), backbone `{ck.config.backbone}`, input {ck.config.input_size} px, "
        f"parts {ck.config.part_size} px, FMA {'on' if ck.config.fma.enabled else 'off'} (θ {ck.config.fma.theta}, r {ck.config.fma.r})",
        f"- decision threshold {ck.config.threshold:.3f} (tuned on val for κ), fusion γ {ck.config.gamma}",
        f"- file SHA-256 `{ck.sha256}`; engine {ck.meta.get('engine_version')}; created {ck.meta.get('created')}",
        "",
        "## Data",
        f"- FracAtlas (Abedeen et al., Scientific Data 10, 521 (2023), CC BY 4.0), converted as described in the project's "
        f"`shared/data/xray/SOURCES.md`: {data.get('n_train')} training images {data.get('train_counts')}, "
        f"{data.get('n_val')} validation images {data.get('val_counts')}. Trained with image labels only; boxes used only to score.",
        "",
        "## Training recipe",
        "One command re-trains it and its baseline from the shared data: `scripts/train_default.sh` (about 2 h on 2 CPU cores). It runs",
        "",
        "```",
        "msfm train ../shared/data/xray/labels.csv --recipe default --out runs/default/msfm",
        "msfm train ../shared/data/xray/labels.csv --recipe default-plain --out runs/default/plain   # the baseline",
        "```",
        "",
        "then measures other inference-time FMA θ and look-closer crop sources on val (`scripts/tune_inference.py`, reported below), "
        "writes the shippable copy without training state (`scripts/ship_model.py`; float32, as float16 flipped a val label) and scores the result (`msfm evaluate ... --baseline runs/default/plain/best.pt`).",
        "",
        "- recipe: " + ", ".join(f"{k}={tc.get(k)}" for k in ("backbone", "pretrained", "input_size", "part_size", "fma", "loss", "optimizer", "lr", "epochs", "lr_step", "batch_size", "seed")),
        f"- initialised from: {ck.meta.get('pretrained')}",
        f"- best epoch by val κ: {ck.meta.get('epoch')}; inference settings: {(ck.meta.get('inference_tuned') or {}).get('variant', 'as trained')}; "
        f"weights stored as {ck.meta.get('weights_dtype', 'float32')}",
        "",
        "## Validation metrics (FracAtlas val split)",
        "",
        "| | AUC | κ | accuracy | sensitivity | specificity | F1 abnormal | JPE |",
        "|---|---|---|---|---|---|---|---|",
        f"| MSFM (ensemble) | {fmt(m.get('auc'))} | {fmt(m.get('kappa'))} | {fmt(m.get('accuracy'))} | {fmt(m.get('sensitivity'))} | {fmt(m.get('specificity'))} | {fmt(m.get('f1_abnormal'))} | {fmt(m.get('jpe'))} |",
        f"| plain classifier, same backbone, data and budget ({b.get('source', '')}) | {fmt(plain.get('auc'))} | {fmt(plain.get('kappa'))} | {fmt(plain.get('accuracy'))} | {fmt(plain.get('sensitivity'))} | {fmt(plain.get('specificity'))} | {fmt(plain.get('f1_abnormal'))} | {fmt(plain.get('jpe'))} |",
        "",
        f"Localisation on the {loc.get('n_images')} fractured val images with boxes:",
        "",
        "| | IoU ≥ 0.5 | IoU ≥ 0.3 | IoU ≥ 0.1 | pointing |",
        "|---|---|---|---|---|",
        f"| MSFM fused box (pointing: peak of A_o) | {fmt(loc.get('iou50'))} | {fmt(loc.get('iou30'))} | {fmt(loc.get('iou10'))} | {fmt(loc.get('pointing'))} |",
        f"| MSFM object box | {fmt(m.get('localization_object_box', {}).get('iou50'))} | {fmt(m.get('localization_object_box', {}).get('iou30'))} | {fmt(m.get('localization_object_box', {}).get('iou10'))} | |",
        f"| CAM box baseline (pointing: CAM peak) | {fmt(cam.get('iou50'))} | {fmt(cam.get('iou30'))} | {fmt(cam.get('iou10'))} | {fmt(cam.get('pointing'))} |",
        "",
        f"Other pointing readings for MSFM: peak of the main-stage abnormal CAM {fmt(loc.get('pointing_cam'))}, centre of the rank-1 window {fmt(loc.get('pointing_window1'))}. "
        f"Median box area: fused box {100 * (loc.get('median_area_fused') or 0):.1f} % of the image, largest ground-truth box {100 * (loc.get('median_area_gt') or 0):.2f} %. "
        "A box k times larger than the fracture it contains has IoU 1/k, so the fused box (a γ-weighted mean of windows that span 43–86 % of the crop, SPEC §3) "
        "cannot reach IoU ≥ 0.3 on most of these fractures; pointing is the more telling number.",
        "",
        "Per-stage AUC: " + ", ".join(f"{k} {fmt(v.get('auc'))}" for k, v in m.get("stages", {}).items()) + ".",
        "",
        "Per body part (MSFM ensemble):",
        "",
        "| body part | n | AUC | κ | accuracy |",
        "|---|---|---|---|---|",
    ]
    for part, pm in sorted(m.get("per_body_part", {}).items()):
        lines.append(f"| {part} | {pm.get('n')} | {fmt(pm.get('auc'))} | {fmt(pm.get('kappa'))} | {fmt(pm.get('accuracy'))} |")
    lines += [""] + calibration_lines(ck.calibration)[:-1]
    if args.extra:
        lines += ["", Path(args.extra).read_text().rstrip()]
    lines += [
        "",
        "## Known limitations",
        "- Metal hardware: 97 fractured but only 2 normal source images show orthopaedic hardware; the model can learn \"metal means fracture\".",
        "- Boxes are weak evidence: fractures cover ~0.4 % of the image (median) and the model never saw a box; treat the box as where to look first.",
        "- Body parts are coarse (hand = upper limb, leg = lower limb, few hips and shoulders); no finer part is known to the model.",
        "- Single source (three hospitals in Bangladesh), label noise and possible patient overlap between splits (see SOURCES.md).",
        "",
        "Reproduce the MSFM numbers offline: `msfm evaluate ../shared/data/xray/labels.csv --checkpoint default` "
        "(the baseline rows need the step-1 classifier: add `--baseline runs/default/plain/best.pt` after `scripts/train_default.sh`).",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
