"""Can the bundle leave these Python packages out? Run what the bundle does without them.

    .venv/bin/python installer/check_exclusions.py networkx jinja2 markupsafe ...

The named top-level modules are moved aside in this Python's site-packages (and put back
afterwards, also after an interrupted run), and every command below runs in a fresh
process of that Python: ``msfm predict`` of the demo study with every export (JSON,
CSV, DICOM SC, SR + GSPS, PDF report, overlays, anonymised) and a first ONNX export of the
model, ``msfm train`` (MSFM and the plain classifier, one epoch on real radiographs), ``msfm
evaluate``, and the desktop's ``--self-check`` (decoder child, analysis). Prints each
command's result; exit status 0 when all passed. Run it with the build environment's
Python (``build/venv-cpu/bin/python`` for the CPU bundle). installer/msfm.spec lists the
exclusions this proved safe (installer/README.md has the measured sizes).
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
XRAY = Path(os.environ.get("MSFM_SHARED", ROOT.parent / "shared")) / "data" / "xray"

HIDDEN = ".msfm-left-out"  # where the named packages wait in site-packages while the commands run


def hide(modules: list[str]) -> list[tuple[Path, Path]]:
    """Move the named top-level modules aside in this Python's site-packages, as a bundle
    without them would lack them (a failing import hook is not the same: torch asks
    ``find_spec`` about optional modules and handles None, not an error)."""
    moved = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin in (None, "built-in", "frozen"):
            continue
        src = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        dst = src.parent / HIDDEN / src.name
        dst.parent.mkdir(exist_ok=True)
        src.rename(dst)
        moved.append((src, dst))
    return moved


def restore(site: Path) -> None:
    hidden = site / HIDDEN
    if hidden.is_dir():
        for p in hidden.iterdir():
            p.rename(site / p.name)
        hidden.rmdir()


def tiny_dataset(root: Path, per_class: int = 4) -> Path:
    rows = list(csv.DictReader(open(XRAY / "labels.csv", newline="")))
    picked = [r for split in ("train", "val") for label in ("0", "1") for r in [x for x in rows if x["split"] == split and x["label"] == label][:per_class]]
    (root / "images").mkdir(parents=True)
    for r in picked:
        (root / "images" / r["file"]).symlink_to(XRAY / "images" / r["file"])
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "body_part", "split"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("file", "label", "body_part", "split")} for r in picked)
    return root / "labels.csv"


def main(blocked: list[str]) -> int:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "site").mkdir()
        import torch

        if torch.version.cuda is None:  # the CPU bundle's environment: its runtime hook too
            (t / "site" / "sitecustomize.py").write_text(f"import runpy\nrunpy.run_path({str(ROOT / 'installer' / 'rthook_torchvision_cpu.py')!r})\n")
        env = dict(os.environ, PYTHONPATH=f"{t / 'site'}{os.pathsep}{ROOT}",
                   MSFM_DATA_DIR=str(t / "data"), MSFM_CACHE_DIR=str(t / "cache"), QT_QPA_PLATFORM="offscreen")
        labels = tiny_dataset(t / "tiny")
        demo = ROOT / "resources" / "demo"
        cli = [py, "-m", "engine.cli"]
        train = [*cli, "train", str(labels), "--backbone", "efficientnet_lite0", "--input-size", "224", "--epochs", "1", "--batch-size", "4", "--quiet"]
        commands = {
            "predict + every export": [*cli, "predict", str(demo), "--json", str(t / "p.json"), "--csv", str(t / "p.csv"), "--dicom-sc", str(t / "sc"),
                                       "--dicom-sr", str(t / "sr"), "--report", str(t / "report"), "--overlays", str(t / "ov"), "--quiet"],
            "predict anonymised": [*cli, "predict", str(demo / "dicom"), "--dicom-sc", str(t / "sc-anon"), "--dicom-sr", str(t / "sr-anon"), "--anonymise", "--quiet"],
            "train MSFM": [*train, "--out", str(t / "run")],
            "train plain": [*train, "--model", "plain", "--out", str(t / "plain")],
            "evaluate": [*cli, "evaluate", str(labels), "--checkpoint", str(t / "run" / "best.pt"), "--json", str(t / "m.json"), "--quiet"],
            "desktop self-check": [py, "-m", "msfm_desktop.main", "--self-check", str(t / "shot.png")],
        }
        failed = 0
        site = Path(sysconfig.get_paths()["purelib"])
        restore(site)  # after an interrupted run
        moved = hide(blocked)
        print(f"left out: {', '.join(str(src.relative_to(site)) for src, _ in moved) or '(nothing)'}", flush=True)
        try:
            for name, cmd in commands.items():
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
                failed += out.returncode != 0
                print(f"{'ok  ' if out.returncode == 0 else 'FAIL'} {name}", flush=True)
                if out.returncode != 0:
                    print("     " + (out.stderr or out.stdout)[-800:].replace("\n", "\n     "))
        finally:
            restore(site)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
