"""The CPU benchmark suite in one command: every ratio beside its target, and JSON.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/run_all.py [--only inference pipeline ...] [--json FILE]

Benchmarks (each in :mod:`benchmarks`, runnable on its own):

* ``inference``: full ``predict`` vs the backbone forwards it needs (ResNet-18/50, Lite0
  at 448 px, batch 1 and 8); target overhead <= 1.05 at batch 8.
* ``pipeline``: batched inference vs the naive per-image reference; target >= 3x.
* ``train``: a training step, batched vs per-image; target >= 2x; peak RSS.
* ``indexing``: header scan vs full reads on >= 1,000 DICOM files; >= 10x, < 2 s.
* ``memory``: 2,000 predictions at flat memory (growth after warm-up <= 5 %).
* ``ui``: the longest event-loop stall while opening, analysing and fine-tuning; < 50 ms.
* ``start``: launch -> start-up picture, window, first analysed image (cold and warm); <= 3 s warm.

Nothing else should run on the machine meanwhile: it has 2 cores, and the benchmarks time
variants in rotation precisely because the load drifts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, print_rows  # noqa: E402

SUITE = {
    "inference": ("bench_inference", {}),
    "onnx": ("bench_onnx", {}),
    "pipeline": ("bench_pipeline", {}),
    "train": ("bench_train", {}),
    "indexing": ("bench_indexing", {}),
    "memory": ("bench_memory", {}),
    "ui": ("ui_responsiveness", {}),
    "start": ("bench_start", {}),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(SUITE), default=list(SUITE))
    ap.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    args = ap.parse_args(argv)
    import torch

    t_start = time.perf_counter()
    rows, seconds = [], {}
    for key in args.only:
        module, kwargs = SUITE[key]
        print(f"== {key}", flush=True)
        t0 = time.perf_counter()
        rows += importlib.import_module(module).run(**kwargs)
        seconds[key] = round(time.perf_counter() - t0, 1)
    total = time.perf_counter() - t_start
    print(f"\n== summary ({total / 60:.1f} min, {torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()})")
    print_rows(rows)
    missed = [r for r in rows if r.met is False]
    print(f"{sum(r.met is True for r in rows)} target(s) met, {len(missed)} not met")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                                     "seconds": seconds, "total_seconds": round(total, 1), "rows": [r.to_json() for r in rows]}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
