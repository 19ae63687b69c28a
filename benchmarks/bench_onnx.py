"""CPU inference of the shipped model: PyTorch fp32 vs bf16 autocast vs ONNX Runtime vs
the torch-free predictor.

* ``torch``: ``Predictor.from_checkpoint(..., runtime="torch")``, fp32 (the reference);
* ``bf16``: the same under ``torch.autocast("cpu", torch.bfloat16)``;
* ``onnx``: ``runtime="onnx"``: the encoder through ONNX Runtime (engine/model/ort.py), the
  rest PyTorch;
* ``lite``: :class:`engine.lite.LitePredictor`: the same graphs, everything around them in
  NumPy and OpenCV, in a process that never imports torch (what the app runs on the CPU
  once the model's graphs are cached).

Each variant runs in its own process, as the app runs one predictor: two thread pools in
one process (torch's OpenMP workers, a second ONNX Runtime session) compete for these 2
cores and slow whichever runs next, which a same-process rotation measured as 30-50 % on
ONNX Runtime. The processes take turns (``--rounds``; this machine drifts +-30 % minute to
minute); each times ``predict_batch`` on the same ``--batch`` radiographs ``--repeats``
times after a warm-up (per image of the batch; the torch-free predictor analyses a batch in
two lanes side by side, and also one image alone), and the medians over all rounds are
reported, with the ratios to ``torch`` and a 20-image study (``predict`` over 20 files, decoding included) for ``lite``
and ``torch``, against the issue's targets (<= 0.10 s per image, <= 3 s per 20-image
study). Writes results/onnx.json.

    .venv/bin/python benchmarks/bench_onnx.py [--batch 2] [--repeats 3] [--rounds 3]
    .venv/bin/python benchmarks/bench_onnx.py --compare OLD.pt resources/models/default.pt   # two files, in turn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, XRAY, Row, print_rows

VARIANTS = ("torch", "bf16", "onnx", "lite")


def child(variant: str, batch: int, repeats: int, study: bool) -> dict:
    """In a fresh process: per-image seconds of ``variant`` (``repeats`` timings), and the
    20-image study's seconds when asked."""
    from engine.io import load_image
    from engine.resources import DEFAULT_MODEL

    model = Path(os.environ.get("MSFM_BENCH_MODEL") or DEFAULT_MODEL)
    files = sorted(XRAY.glob("*.png"))[:20]
    images = [load_image(p) for p in files[:batch]]
    if variant == "lite":
        from engine.lite import LitePredictor

        predictor = LitePredictor.open(model)
        assert predictor is not None, "no cached graphs: the parent builds them first"
        run = lambda: predictor.predict_batch(images)  # noqa: E731
    else:
        import torch

        from engine.infer import Predictor

        predictor = Predictor.from_checkpoint(model, "cpu", runtime="onnx" if variant == "onnx" else "torch")

        def run():
            if variant == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return predictor.predict_batch(images)
            return predictor.predict_batch(images)
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) / len(images))
    out = {"per_image_s": times, "torch_imported": "torch" in sys.modules, "threads": os.cpu_count()}
    if variant == "lite":  # one image alone: all cores in one session, no lanes
        out["single_s"] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predictor.predict_batch(images[:1])
            out["single_s"].append(time.perf_counter() - t0)
    if study:
        t0 = time.perf_counter()
        predictor.predict(files)
        out["study_s"] = time.perf_counter() - t0
    return out


def _bench_env() -> dict[str, str]:
    """The children's environment: one model cache for the whole run."""
    env = dict(os.environ)
    env.setdefault("MSFM_CACHE_DIR", tempfile.mkdtemp(prefix="msfm-bench-cache-"))
    return env


def _run_child(env: dict[str, str], variant: str, batch: int, repeats: int, study: bool = False) -> dict:
    """:func:`child` in a fresh process; its JSON result."""
    me = [sys.executable, str(Path(__file__).resolve())]
    done = subprocess.run([*me, "--child", variant, "--batch", str(batch), "--repeats", str(repeats), *(["--study"] if study else [])],
                          env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(batch: int = 2, repeats: int = 3, rounds: int = 3) -> list[Row]:
    env = _bench_env()
    # The app's first use of the model: exports the graphs and writes the torch-free manifest.
    _run_child(env, "onnx", batch, 1)
    per: dict[str, list[float]] = {v: [] for v in VARIANTS}
    studies: dict[str, float] = {}
    imported: dict[str, bool] = {}
    single: list[float] = []
    for r in range(rounds):
        for v in VARIANTS:
            n = 1 if v == "bf16" else repeats  # bf16 takes seconds per image here
            study = r == rounds - 1 and v in ("torch", "lite")
            got = _run_child(env, v, batch, n, study)
            per[v] += got["per_image_s"]
            imported[v] = got["torch_imported"]
            single += got.get("single_s", [])
            if study:
                studies[v] = got["study_s"]
    med = {v: statistics.median(t) for v, t in per.items()}
    detail = f"each in its own process, {os.cpu_count()} cores, batch {batch}, {rounds} rounds, {platform.processor() or platform.machine()}"
    assert not imported["lite"], "the torch-free predictor imported torch"
    return [
        Row("onnx", "torch fp32 per image", med["torch"] * 1000, None, unit="ms", detail=detail),
        Row("onnx", "bf16 autocast per image", med["bf16"] * 1000, None, unit="ms", detail=detail),
        Row("onnx", "ONNX Runtime encoder, rest PyTorch, per image", med["onnx"] * 1000, None, unit="ms", detail=detail),
        Row("onnx", "torch-free (ONNX Runtime + NumPy) per image", med["lite"] * 1000, 100.0, sense="<=", unit="ms",
            detail=detail + "; torch never imported"),
        Row("onnx", "torch-free, one image alone", statistics.median(single) * 1000, 100.0, sense="<=", unit="ms",
            detail=detail + "; the latency of a single image (a batch runs in two lanes)"),
        Row("onnx", "speed-up ONNX Runtime / torch fp32", med["torch"] / med["onnx"], None, detail=detail),
        Row("onnx", "speed-up torch-free / torch fp32", med["torch"] / med["lite"], None, detail=detail),
        Row("onnx", "speed-up bf16 / torch fp32", med["torch"] / med["bf16"], None, detail=detail),
        Row("onnx", "20-image study, torch-free (decode included)", studies["lite"], 3.0, sense="<=", unit="s",
            detail=f"PyTorch fp32: {studies['torch']:.2f} s"),
    ]


def compare(models: list[Path], batch: int, repeats: int, rounds: int) -> list[Row]:
    """The torch-free predictor (what the app runs) on two or more checkpoint files, taking
    turns round by round in fresh processes: per image of a batch, one image alone and the
    20-image study, each file's medians and their ratios to the first file's."""
    env = _bench_env()
    got: dict[Path, dict[str, list[float]]] = {m: {"per": [], "single": [], "study": []} for m in models}
    for m in models:  # the app's first use of each file: its graphs exported and cached
        _run_child({**env, "MSFM_BENCH_MODEL": str(m)}, "onnx", batch, 1)
    for _ in range(rounds):
        for m in models:
            out = _run_child({**env, "MSFM_BENCH_MODEL": str(m)}, "lite", batch, repeats, study=True)
            got[m]["per"] += out["per_image_s"]
            got[m]["single"] += out["single_s"]
            got[m]["study"].append(out["study_s"])
    med = {m: {k: statistics.median(v) for k, v in g.items()} for m, g in got.items()}
    base = models[0]
    detail = f"torch-free, each in its own process, {os.cpu_count()} cores, batch {batch}, {rounds} rounds in turn"
    rows = []
    for m in models:
        rows += [Row("onnx", f"{m.name}: per image of a batch", med[m]["per"] * 1000, None, unit="ms",
                     detail=f"{med[m]['per'] / med[base]['per']:.2f}x {base.name}; {detail}"),
                 Row("onnx", f"{m.name}: one image alone", med[m]["single"] * 1000, None, unit="ms",
                     detail=f"{med[m]['single'] / med[base]['single']:.2f}x {base.name}"),
                 Row("onnx", f"{m.name}: 20-image study (decode included)", med[m]["study"], 3.0, sense="<=", unit="s",
                     detail=f"{med[m]['study'] / med[base]['study']:.2f}x {base.name}")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--study", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compare", nargs="+", type=Path, metavar="CHECKPOINT",
                    help="time the torch-free predictor on these files in turn instead (ratios to the first); writes results/onnx_compare.json")
    args = ap.parse_args()
    if args.compare:
        rows = compare(args.compare, args.batch, args.repeats, args.rounds)
        print_rows(rows)
        RESULTS.mkdir(parents=True, exist_ok=True)
        Path(RESULTS / "onnx_compare.json").write_text(json.dumps([r.to_json() for r in rows], indent=1))
        return
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.repeats, args.study)))
        return
    rows = run(args.batch, args.repeats, args.rounds)
    print_rows(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(RESULTS / "onnx.json").write_text(json.dumps([r.to_json() for r in rows], indent=1))


if __name__ == "__main__":
    main()
