"""Inference speed: full MSFM ``predict`` vs the backbone forwards it needs (the floor).

For each backbone and batch size, in rotation within one process (this machine drifts
+-30 % minute to minute), it times:

* ``predict``: ``Predictor.predict_batch`` on loaded radiographs (resize, FMA, three
  stages, box selection, fusion, mapping, maps to host);
* ``floor``: only the forwards MSFM cannot avoid on the same batch: the FMA network at
  S, the encoder at S twice (image, look-closer crop) and at 224 for the 7 parts.

It prints per-image milliseconds and the overhead ratio predict / floor, and writes JSON.

    .venv/bin/python benchmarks/bench_inference.py [--sizes 448] [--batches 1 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from engine.config import ModelConfig
from engine.infer import Predictor
from engine.io import load_image
from engine.model.msfm import MSFM
from engine.preprocess import make_batch

REPO = Path(__file__).resolve().parents[1]
XRAY = REPO.parent / "shared" / "data" / "xray" / "images"


def floor_forward(model: MSFM, x: torch.Tensor) -> None:
    cfg = model.config
    b = x.shape[0]
    if model.fma is not None:
        model.fma.net.features(x)
    model.backbone(x)
    model.backbone(x)  # the look-closer crop has the same shape
    model.backbone(torch.rand(b * cfg.num_windows, 1, cfg.part_size, cfg.part_size))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "efficientnet_lite0"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[448])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "inference.json"))
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # random-init BN can make denormals that distort CPU timings
    files = sorted(XRAY.glob("*.png"))[: max(args.batches)]
    images = [load_image(p) for p in files]
    rows = []
    for name in args.backbones:
        for size in args.sizes:
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = MSFM(ModelConfig(backbone=name, input_size=size), pretrained="auto").eval()
            pred = Predictor(model, device="cpu")
            for bs in args.batches:
                batch = images[:bs]
                x = make_batch(batch, size)
                with torch.inference_mode():
                    pred.predict_batch(batch)  # warm-up
                    floor_forward(model, x)
                    t_pred, t_floor = [], []
                    for _ in range(args.repeats):  # alternate the two variants
                        t0 = time.perf_counter()
                        pred.predict_batch(batch)
                        t1 = time.perf_counter()
                        floor_forward(model, x)
                        t2 = time.perf_counter()
                        t_pred.append((t1 - t0) / bs)
                        t_floor.append((t2 - t1) / bs)
                mp, mf = statistics.median(t_pred), statistics.median(t_floor)
                rows.append({"backbone": name, "input_size": size, "batch": bs, "predict_ms_per_image": 1000 * mp, "floor_ms_per_image": 1000 * mf, "overhead_ratio": mp / mf})
                print(f"{name:20s} S={size} batch={bs}: predict {1000 * mp:7.1f} ms/img, backbone floor {1000 * mf:7.1f} ms/img, ratio {mp / mf:.3f}", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
