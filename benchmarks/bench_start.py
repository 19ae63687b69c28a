"""Start time of the desktop app: from launch to the start-up picture (splash), to the
window on screen and to the first analysed image of the demo study (``msfm-desktop --self-check``, which opens the study,
decodes its first image and analyses it as a clinician's *Analyse* would).

* ``cold``: the first start after installation: the operating system's file cache
  dropped (where this user may: root on Linux) and an empty user cache folder, so the
  ONNX graphs of the model are exported again.
* ``warm``: later starts: files cached by the OS, graphs cached (median of ``--repeats``).

The app runs offscreen (``QT_QPA_PLATFORM=offscreen``) unless ``--xvfb``; target (issue
21): <= 3 s warm from launch to the first analysed image. Writes results/start.json.

    .venv/bin/python benchmarks/bench_start.py [--repeats 5] [--exe BUNDLE/msfm-desktop] [--xvfb]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS, Row, print_rows


def _drop_os_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def launch(cmd: list[str], env: dict[str, str], timeout: float = 600.0) -> dict:
    """One start: seconds from launch to the window shown and to the first analysed image."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        out = subprocess.run([*cmd, "--self-check", str(Path(tmp) / "shot.png")], env=env, capture_output=True, text=True, timeout=timeout)
        t_exit = time.time()
    if out.returncode != 0:
        raise RuntimeError(f"self-check failed ({out.returncode}): {out.stdout[-1500:]}{out.stderr[-1500:]}")
    summary = json.loads(out.stdout[out.stdout.find("{"):])
    return {"splash": summary["splash_unix"] - t0, "shown": summary["shown_unix"] - t0, "analysed": summary["analysed_unix"] - t0, "exit": t_exit - t0}


def run(repeats: int = 5, exe: Path | None = None, xvfb: bool = False) -> list[Row]:
    cmd = [str(exe)] if exe else [sys.executable, "-m", "msfm_desktop.main"]
    what = f"bundle {exe}" if exe else "development install"
    work = Path(tempfile.mkdtemp(prefix="msfm-start-"))
    env = dict(os.environ, MSFM_DATA_DIR=str(work / "data"), MSFM_CACHE_DIR=str(work / "cache"))
    env.pop("PYTHONPATH", None) if exe else env.update(PYTHONPATH=str(REPO))
    if not xvfb:
        env["QT_QPA_PLATFORM"] = "offscreen"
    else:
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", *cmd]
        env["QT_QPA_PLATFORM"] = "xcb"
    try:
        dropped = _drop_os_caches()
        cold = launch(cmd, env)
        warm = [launch(cmd, env) for _ in range(repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(w[k] for w in warm) for k in ("splash", "shown", "analysed", "exit")}
    detail = f"{what}; {'OS cache dropped' if dropped else 'OS cache NOT dropped (not root)'} + empty user cache"
    rows = [
        Row("start", "cold: launch -> start-up picture", cold["splash"], None, "<=", "s", detail),
        Row("start", "cold: launch -> window shown", cold["shown"], None, "<=", "s", detail),
        Row("start", "cold: launch -> first image analysed", cold["analysed"], None, "<=", "s", detail),
        Row("start", "warm: launch -> start-up picture", med["splash"], None, "<=", "s", f"median of {repeats}"),
        Row("start", "warm: launch -> window shown", med["shown"], None, "<=", "s", f"median of {repeats}"),
        Row("start", "warm: launch -> first image analysed", med["analysed"], 3.0, "<=", "s", f"median of {repeats}; all: " + ", ".join(f"{w['analysed']:.2f}" for w in warm)),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "start.json").write_text(json.dumps({"command": cmd, "cold": cold, "warm": warm, "rows": [r.to_json() for r in rows]}, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--exe", type=Path, help="a bundle's msfm-desktop (default: this checkout's code in this Python)")
    ap.add_argument("--xvfb", action="store_true", help="a real X server (xvfb-run) instead of Qt's offscreen platform")
    args = ap.parse_args(argv)
    print_rows(run(args.repeats, args.exe, args.xvfb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
