"""CPU inference of the shipped model: PyTorch fp32 vs bf16 autocast vs ONNX Runtime.

One process, the same radiographs, the three variants timed in rotation
(``common.rotate``; this machine drifts +-30 % minute to minute):

* ``torch``: ``Predictor.from_checkpoint(..., runtime="torch")``, fp32 (the reference);
* ``bf16``: the same under ``torch.autocast("cpu", torch.bfloat16)``;
* ``onnx``: ``runtime="onnx"``: the encoder through ONNX Runtime (engine/model/ort.py);
* ``lite``: :class:`engine.lite.LitePredictor`: the same graphs, everything around them in
  NumPy and OpenCV (what the app runs on the CPU once the model's graphs are cached).

Prints per-image milliseconds of ``predict_batch`` on ``--batch`` images, the ratios to
``torch``, and a 20-image study (``Predictor.predict`` over 20 files, decoding
included) with the torch-free predictor against the issue's targets (<= 0.10 s per image of model
time, <= 3 s per 20-image study). Writes results/onnx.json.

    .venv/bin/python benchmarks/bench_onnx.py [--batch 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, XRAY, Row, print_rows, rotate

from engine.infer import Predictor
from engine.io import load_image
from engine.lite import LitePredictor
from engine.resources import DEFAULT_MODEL


def run(batch: int = 2, repeats: int = 3) -> list[Row]:
    import os

    os.environ.setdefault("MSFM_CACHE_DIR", tempfile.mkdtemp(prefix="msfm-bench-cache-"))
    files = sorted(XRAY.glob("*.png"))[:20]
    images = [load_image(p) for p in files[:batch]]
    ref = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", runtime="torch")
    fast = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", runtime="onnx")
    fast.predict_batch(images)  # the graphs are exported (or read from the cache) once, outside the timing
    lite = LitePredictor.open(DEFAULT_MODEL)  # its manifest was written when `fast` was built
    assert lite is not None
    lite.predict_batch(images)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref.predict_batch(images)

    t = rotate({"torch": lambda: ref.predict_batch(images), "bf16": bf16, "onnx": lambda: fast.predict_batch(images),
                "lite": lambda: lite.predict_batch(images)}, repeats)
    per = {k: v / len(images) for k, v in t.items()}
    t0 = time.perf_counter()
    lite.predict(files)
    study = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref.predict(files)
    study_torch = time.perf_counter() - t0
    detail = f"{torch.get_num_threads()} threads, batch {batch}, {platform.processor() or platform.machine()}"
    return [
        Row("onnx", "torch fp32 per image", per["torch"] * 1000, None, unit="ms", detail=detail),
        Row("onnx", "bf16 autocast per image", per["bf16"] * 1000, None, unit="ms", detail=detail),
        Row("onnx", "ONNX Runtime encoder, rest PyTorch, per image", per["onnx"] * 1000, None, unit="ms", detail=detail),
        Row("onnx", "torch-free (ONNX Runtime + NumPy) per image", per["lite"] * 1000, 100.0, sense="<=", unit="ms", detail=detail),
        Row("onnx", "speed-up ONNX Runtime / torch fp32", per["torch"] / per["onnx"], None, detail=detail),
        Row("onnx", "speed-up torch-free / torch fp32", per["torch"] / per["lite"], None, detail=detail),
        Row("onnx", "speed-up bf16 / torch fp32", per["torch"] / per["bf16"], None, detail=detail),
        Row("onnx", f"{len(files)}-image study, torch-free (decode included)", study, 3.0, sense="<=", unit="s", detail=f"torch: {study_torch:.2f} s"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    rows = run(args.batch, args.repeats)
    print_rows(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(RESULTS / "onnx.json").write_text(json.dumps([r.to_json() for r in rows], indent=1))


if __name__ == "__main__":
    main()
