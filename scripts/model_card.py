"""Write resources/models/MODEL_CARD.md from a checkpoint and its ``msfm evaluate`` JSON.

    .venv/bin/python scripts/model_card.py CHECKPOINT METRICS.json [--out resources/models/MODEL_CARD.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.model.calibration import Calibration
from engine.model.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _funnel_reading(fun: dict) -> str:
    """One sentence on which step loses the fracture, read from the funnel's figures."""
    held, when = fun.get("a_window_holds") or 0.0, fun.get("pointing_when_a_window_holds")
    if held >= 0.5 and when is not None and when < 0.5:
        return (" The windows usually see the fracture; what fails most is the part stage's class map, which peaks "
                "elsewhere in them.")
    if held < 0.5:
        return " Most fractures lie outside every part window: the window ranking loses them before the part stage looks."
    return ""


def _fma_words(fma) -> str:
    """The FMA as the model uses it, in words (training-only FMA does nothing at inference)."""
    if not fma.enabled:
        return "FMA off"
    if getattr(fma, "train_only", False):
        lo, hi = fma.theta_range
        return (f"FMA in training only (the authors' mild variant: keep {fma.r:.0%}, θ drawn from [{lo}, {hi}]); "
                "none at inference")
    return f"FMA on (θ {fma.theta}, r {fma.r})"


def _settings_note(meta: dict) -> str:
    """Where the stored threshold came from when inference settings were set after training."""
    inf = meta.get("inference_settings") or {}
    if not inf:
        return ""
    return f" again after `{' '.join('--set ' + o for o in inf.get('overrides', []))}`"


def _inference_words(meta: dict) -> str:
    """The inference settings changed after training, in words ("as trained" when none were)."""
    inf = meta.get("inference_settings") or {}
    if inf.get("overrides"):
        return ", ".join(inf["overrides"]) + " (`scripts/sweep_inference.py`)"
    return (meta.get("inference_tuned") or {}).get("variant", "as trained")


def _recipe_lines(meta: dict, tc: dict) -> list[str]:
    """The recipe lines: a file fine-tuned from another (``--init``) names the recipe of the
    weights it started from and then its own run; a file trained from ImageNet, its recipe."""
    keys = ("backbone", "pretrained", "input_size", "part_size", "fma", "fma_variant", "freeze_blocks", "loss", "optimizer", "lr", "epochs", "lr_step", "batch_size", "seed")
    if not tc.get("init"):
        lines = ["- recipe: " + ", ".join(f"{k}={tc.get(k)}" for k in keys), f"- initialised from: {meta.get('pretrained')}"]
        history = meta.get("history") or []
        if tc.get("time_budget_s"):
            # A budgeted run stops where its wall clock says, not at --epochs: the card names
            # the epochs it ran and the rates they ran at.
            lrs = [h.get("lr") for h in history]
            lines.append(f"- fitted into a wall-clock budget of {tc['time_budget_s']:.0f} s (`--time-budget-s`, at most {tc.get('epochs')} "
                         f"epochs); best epoch by val κ {meta.get('epoch')}"
                         + (f", its epochs' learning rates {', '.join(f'{x:g}' for x in lrs)}" if lrs and all(lrs) else ""))
        return lines
    from engine.recipes import DEFAULT_RECIPE

    stride = tc.get("train_output_stride") or "the model's own"
    return ["- recipe of the weights it continues: " + ", ".join(f"{k}={DEFAULT_RECIPE.get(k)}" for k in keys) + " (`--recipe default`, from ImageNet)",
            f"- then fine-tuned from {meta.get('pretrained')}: lr={tc.get('lr')}, training steps at output stride {stride}, "
            f"freeze_blocks={tc.get('freeze_blocks')}, fma_variant={tc.get('fma_variant')}, batch_size={tc.get('batch_size')}, seed={tc.get('seed')}; "
            f"epochs run: {len(meta.get('history') or [])}" + (f" ({meta['training_note']})" if meta.get("training_note") else "")]


def _strides_words(cfg) -> str:
    """"16", or "16 / 32" when the parts stage runs at another stride than the object stage."""
    return str(cfg.output_stride) if cfg.parts_stride == cfg.output_stride else f"{cfg.output_stride} / {cfg.parts_stride}"


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def ci_fmt(v, ci) -> str:
    """``0.210 [0.123–0.296]``: a figure with its bootstrap 95 % interval when there is one."""
    if v is None:
        return "n/a"
    return fmt(float(v)) + (f" [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else "")


def _loc_rows(m: dict, subset: str) -> list[str]:
    """Rows of the localisation table for one subset (all images, or without hardware)."""
    loc, ci = m.get("localization") or {}, m.get("ci") or {}
    if not loc.get("n_images"):
        return []
    b = m.get("baselines") or {}
    cam = b.get("cam_box") or {}
    cci = cam.get("ci") or {}
    les, reg = loc.get("lesion") or {}, loc.get("region") or {}
    n = loc["n_images"]
    peak = "peak of E" if loc.get("peak") == "evidence" else "peak of A_o (no evidence map)"
    rows = []
    if les:
        rows.append(f"| MSFM lesion box, {peak} | {subset} ({n}) | {ci_fmt(loc.get('pointing'), ci.get('pointing'))} | "
                    f"{ci_fmt(loc.get('pointing15'), ci.get('pointing15'))} | "
                    + " | ".join(ci_fmt(les.get(k), ci.get(f"lesion_{k}")) for k in ("iou10", "iou30", "iou50")) + " |")
    rows.append(f"| MSFM region box (eq. 11 fused box){'' if les else ', ' + peak} | {subset} ({n}) | "
                + ("(same peak) | (same peak) | " if les else f"{ci_fmt(loc.get('pointing'), ci.get('pointing'))} | {ci_fmt(loc.get('pointing15'), ci.get('pointing15'))} | ")
                + " | ".join(ci_fmt(reg.get(k), ci.get(f"region_{k}")) for k in ("iou10", "iou30", "iou50")) + " |")
    if cam.get("n_images"):
        src = b.get("source", "")
        src = "MSFM's main stage standing in for the plain classifier" if src.startswith("msfm main stage") else src
        rows.append(f"| CAM-box baseline, CAM peak ({src}) | {subset} ({n}) | {ci_fmt(cam.get('pointing'), cci.get('pointing'))} | "
                    f"{ci_fmt(cam.get('pointing15'), cci.get('pointing15'))} | "
                    + " | ".join(ci_fmt(cam.get(k), cci.get(k)) for k in ("iou10", "iou30", "iou50")) + " |")
    return rows


def _fma_text(f: dict) -> str:
    if not f:
        return "not measured"
    if not f.get("enabled"):
        return "FMA is off in this model: nothing is darkened (0 %)"
    if f.get("gt_area_darkened") is None:
        return "no fractured image with boxes"
    fci = f.get("ci") or {}
    g = fci.get("gt_area_darkened")
    h = fci.get("half_cut")
    return (f"{pct(f['gt_area_darkened'])}" + (f" [{100 * g[0]:.1f}–{100 * g[1]:.1f} %]" if g else "")
            + f" of the fracture-box area (whole image on those radiographs: {pct(f.get('image_area_darkened'))}; "
            f"every image scored: {pct(f.get('image_area_darkened_all'))}); at least half of the fracture darkened on "
            f"{pct(f.get('half_cut'))}" + (f" [{100 * h[0]:.1f}–{100 * h[1]:.1f} %]" if h else "") + f" of the {f.get('n_images')} fractured images")


def localisation_lines(m: dict, heading: str = "## Localisation (SPEC §3b)") -> list[str]:
    """The card's localisation section from an ``msfm evaluate --json`` result: MSFM's lesion
    and region boxes and the CAM-box baseline x pointing, pointing within 15 px and IoU hit
    rates, with bootstrap intervals, on all images and without metal hardware; per body part;
    the FMA suppression of the fracture."""
    loc = m.get("localization") or {}
    if not loc.get("n_images"):
        return [heading, "", "No fractured image with ground-truth boxes was evaluated.", ""]
    boot = m.get("bootstrap") or {}
    nh = m.get("no_hardware") or {}
    lines = [
        heading,
        "",
        f"Scored on the {loc['n_images']} fractured val images with ground-truth boxes (`boxes.csv`; never seen in training), in source pixels. "
        "**Pointing**: the peak of the evidence map E (`Prediction.peak`) inside a ground-truth box, edges included; **≤ 15 px**: within 15 source "
        "pixels of one (the pointing game of Zhang et al., ECCV 2016). **IoU ≥ t**: the share of images whose box overlaps some ground-truth box "
        "with IoU ≥ t; a missing box is a miss. The CAM-box baseline is read the same way (peak of the CAM; its box: 0.2·max, largest component). "
        f"Brackets: bootstrap 95 % intervals ({boot.get('resamples', 1000)} resamples stratified by label, seed {boot.get('seed', 0)}, percentile; "
        "`engine/bootstrap.py`). A rate of 0 gets the interval [0–0]: no resample can do better, which bounds nothing.",
        "",
        "| readout | images | pointing | ≤ 15 px | IoU ≥ 0.1 | IoU ≥ 0.3 | IoU ≥ 0.5 |",
        "|---|---|---|---|---|---|---|",
        *_loc_rows(m, "all"),
    ]
    if nh.get("n"):
        lines += _loc_rows(nh, "no hardware")
    lines.append("")
    if nh.get("n"):
        nci = nh.get("ci") or {}
        lines.append(f"Without metal hardware (FracAtlas `hardware` flag in `meta.csv`; {nh.get('n_excluded_hardware')} images left out, "
                     f"{nh.get('n_excluded_hardware_abnormal')} of them fractured): AUC {ci_fmt(nh.get('auc'), nci.get('auc'))}, "
                     f"κ {ci_fmt(nh.get('kappa'), nci.get('kappa'))} on {nh.get('n')} images.")
        lines.append("")
    elif nh.get("note") or m.get("no_hardware_note"):
        lines += [f"Without metal hardware: not measured ({nh.get('note') or m.get('no_hardware_note')}).", ""]
    areas = []
    if loc.get("median_area_lesion") is not None:
        areas.append(f"lesion box {100 * loc['median_area_lesion']:.2f} %")
    if loc.get("median_area_fused") is not None:
        areas.append(f"region box {100 * loc['median_area_fused']:.1f} %")
    if loc.get("median_area_gt") is not None:
        areas.append(f"largest ground-truth box {100 * loc['median_area_gt']:.2f} %")
    if areas:
        lines.append(f"Median area, as a share of the image: {', '.join(areas)} (a box k times larger than the fracture it holds has IoU 1/k). "
                     f"Pointing of this file read the simpler ways v1 was first read (not the v1 model's figures): peak cell of A_o {fmt(loc.get('pointing_ao'))}, main-stage CAM peak "
                     f"{fmt(loc.get('pointing_cam'))}, centre of the rank-1 window {fmt(loc.get('pointing_window1'))}.")
    fun = loc.get("funnel")
    if fun:
        lines += ["", f"Where the fracture is lost (the centre of a ground-truth box inside each stage's view, {loc.get('n_images')} fractured images): "
                  f"the look-closer crop holds it on {fmt(fun.get('object_crop_holds'))}, some of the 7 part windows on "
                  f"{fmt(fun.get('a_window_holds'))} (together they cover a median {pct(fun.get('median_windows_area'))} of the image), "
                  f"the rank-1 window on {fmt(fun.get('window1_holds'))}. When a window holds it, the "
                  f"peak of E lands inside the fracture on {fmt(fun.get('pointing_when_a_window_holds'))} of those images; when none does, on "
                  f"{fmt(fun.get('pointing_when_no_window_holds'))}." + _funnel_reading(fun)]
    obj = m.get("localization_object_box") or {}
    if obj.get("iou10") is not None:
        lines += ["", "Object box (the look-closer crop) IoU ≥ 0.1/0.3/0.5: " + " / ".join(fmt(obj.get(k)) for k in ("iou10", "iou30", "iou50")) + "."]
    parts = [(k, v["localization"]) for k, v in sorted((m.get("per_body_part") or {}).items()) if v.get("localization")]
    if parts:
        lines += ["", "Per body part (all images; few fractured hips and shoulders, so read these as counts):", "",
                  "| body part | fractured with boxes | pointing | ≤ 15 px | lesion IoU ≥ 0.1 | lesion IoU ≥ 0.3 | region IoU ≥ 0.1 | CAM box ≤ 15 px | CAM box IoU ≥ 0.1 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for part, pl in parts:
            les, reg, cam = pl.get("lesion") or {}, pl.get("region") or {}, pl.get("cam_box") or {}
            lines.append(f"| {part} | {pl['n_images']} | {fmt(pl.get('pointing'))} | {fmt(pl.get('pointing15'))} | {fmt(les.get('iou10'))} | "
                         f"{fmt(les.get('iou30'))} | {fmt(reg.get('iou10'))} | {fmt(cam.get('pointing15'))} | {fmt(cam.get('iou10'))} |")
    f = m.get("fma_suppression") or {}
    if f:
        mode = f", {f['mode']} mode" if f.get("mode") not in (None, "paper") else ""
        theta = f" (θ {f.get('theta')}, r {f.get('r')}{mode})" if f.get("enabled") else ""
        lines += ["", f"**FMA fracture suppression**{theta}: the share of ground-truth box area whose FMA factor is < 1 on the network input, "
                  f"averaged over fractured images. All images: {_fma_text(f)}."]
        if (nh.get("fma_suppression") or {}).get("enabled"):
            lines += ["", f"Without hardware: {_fma_text(nh['fma_suppression'])}."]
    return lines + [""]


def classification_ci_line(m: dict) -> str:
    """Bootstrap intervals of the ensemble's AUC and κ (kept out of the table, whose numbers tests read)."""
    ci, boot = m.get("ci") or {}, m.get("bootstrap") or {}
    if not ci.get("auc"):
        return ""
    line = (f"Bootstrap 95 % intervals (MSFM ensemble; {boot.get('resamples', 1000)} resamples stratified by label, seed {boot.get('seed', 0)}): "
            f"AUC {ci_fmt(m.get('auc'), ci.get('auc'))}, κ at the model's threshold {ci_fmt(m.get('kappa'), ci.get('kappa'))}.")
    plain = (m.get("baselines") or {}).get("plain_classifier") or {}
    if plain.get("ci"):
        line += (f" Plain classifier: AUC {ci_fmt(plain.get('auc'), plain['ci'].get('auc'))}, "
                 f"κ at its threshold {ci_fmt(plain.get('kappa'), plain['ci'].get('kappa'))}.")
    d = plain.get("msfm_minus_plain")
    if d:
        line += (f" MSFM minus the plain classifier on the same draws (paired): AUC {d['auc']:+.3f} "
                 f"[{d['ci']['auc'][0]:+.3f} to {d['ci']['auc'][1]:+.3f}], κ {d['kappa']:+.3f} "
                 f"[{d['ci']['kappa'][0]:+.3f} to {d['ci']['kappa'][1]:+.3f}].")
    return line


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
        "(`scripts/calibrate_model.py`; a training run stores the same in its `best.pt`, `engine/model/calibration.py`). "
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


def _budget_words(budget: dict | None) -> str:
    """The baseline's input size and training length as the card's row label says them."""
    if not budget:
        return ""
    best = f", best epoch {budget['best_epoch']}" if budget.get("best_epoch") is not None else ""
    return f", {budget.get('input_size')} px, {budget.get('epochs')} epochs{best}"


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
    b = m.get("baselines", {})
    plain = b.get("plain_classifier", {})
    lines = [
        f"# Model card: {ck.meta.get('name', 'MSFM')}",
        "",
        "**Intended use: decision support for reading musculoskeletal radiographs, not a diagnosis.** "
        "A clinician reads every image; the model's label, probability and boxes point at where to look.",
        "",
        "## Model",
        f"- MSFM (Kumar et al., ICCV 2023 workshops), backbone `{ck.config.backbone}`, input {ck.config.input_size} px, "
        f"parts {ck.config.part_size} px, {_fma_words(ck.config.fma)}",
        *([f"- object and part stages at output stride {_strides_words(ck.config)} at inference (the same weights; "
           f"{ck.config.object_grid_size}×{ck.config.object_grid_size} cells in the look-closer crop, "
           f"{ck.config.part_size // ck.config.parts_stride}×{ck.config.part_size // ck.config.parts_stride} per part window)"]
          if (ck.config.output_stride, ck.config.parts_stride) != (32, 32) else []),
        f"- decision threshold {ck.config.threshold:.3f} (tuned on val for κ{_settings_note(ck.meta)}), fusion γ {ck.config.gamma}",
        f"- file SHA-256 `{ck.sha256}`; engine {ck.meta.get('engine_version')}; created {ck.meta.get('created')}",
        *([f"- lesion box threshold τ (`lesion_tau`) {ck.config.lesion_tau:.2f}, tuned on the val boxes (`scripts/tune_lesion_tau.py`; weights unchanged)"]
          if ck.meta.get("lesion_tau_tuning") else [f"- lesion box threshold τ (`lesion_tau`) {ck.config.lesion_tau:.2f} (default, not tuned)"]),
        "",
        "## Data",
        f"- FracAtlas (Abedeen et al., Scientific Data 10, 521 (2023), CC BY 4.0), converted as described in the project's "
        f"`shared/data/xray/SOURCES.md`: {data.get('n_train')} training images {data.get('train_counts')}, "
        f"{data.get('n_val')} validation images {data.get('val_counts')}. Trained with image labels only; boxes used only to score.",
        "",
        "## Training recipe",
        "One command re-trains it and its baseline from the shared data: `scripts/train_default.sh` (about 8 min of MSFM training "
        "on one H200, where the shipped file was trained; about 6 h on 2 CPU cores). It runs",
        "",
        "```",
        "msfm train ../shared/data/xray/labels.csv --recipe default --out runs/default/msfm",
        "msfm train ../shared/data/xray/labels.csv --recipe default-plain --out runs/default/plain   # the baseline, same budget",
        "```",
        "",
        "then writes the shippable copy without training state (`scripts/ship_model.py`; float32, as float16 flipped a val label of v1), "
        "sets its inference settings and re-tunes the decision threshold for κ on val (`scripts/sweep_inference.py --set output_stride=16 "
        "--retune-threshold --write`; weights unchanged), tunes the lesion-box threshold τ on the val boxes (`scripts/tune_lesion_tau.py`), "
        "calibrates on val (`scripts/calibrate_model.py`) and scores it (`msfm evaluate ... --baseline runs/default/plain/best.pt`).",
        "",
        *_recipe_lines(ck.meta, tc),
        f"- best epoch by val κ: {ck.meta.get('epoch')}; inference settings: {_inference_words(ck.meta)}; "
        f"weights stored as {ck.meta.get('weights_dtype', 'float32')}",
        "",
        "## Validation metrics (FracAtlas val split)",
        "",
        "| | AUC | κ | accuracy | sensitivity | specificity | F1 abnormal | JPE |",
        "|---|---|---|---|---|---|---|---|",
        f"| MSFM (ensemble) | {fmt(m.get('auc'))} | {fmt(m.get('kappa'))} | {fmt(m.get('accuracy'))} | {fmt(m.get('sensitivity'))} | {fmt(m.get('specificity'))} | {fmt(m.get('f1_abnormal'))} | {fmt(m.get('jpe'))} |",
        f"| plain classifier, same backbone and data{_budget_words(b.get('budget'))} ({b.get('source', '')}) | {fmt(plain.get('auc'))} | {fmt(plain.get('kappa'))} | {fmt(plain.get('accuracy'))} | {fmt(plain.get('sensitivity'))} | {fmt(plain.get('specificity'))} | {fmt(plain.get('f1_abnormal'))} | {fmt(plain.get('jpe'))} |",
        "",
        classification_ci_line(m),
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
    lines += [""] + localisation_lines(m) + calibration_lines(ck.calibration)[:-1]
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
