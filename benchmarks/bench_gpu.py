"""GPU figures (run on a machine with CUDA): inference latency and training images/s,
mixed precision vs float32 timed in rotation in one run, with the GPU's name.

    .venv/bin/python benchmarks/bench_gpu.py [--backbone efficientnet_lite0] [--size 448] [--batch 16] [--json FILE]
        [--images DIR]   (default: the FracAtlas images; the GPU job passes its packed copy, .gpujob/data/images)

Without CUDA it says so and exits 0: nothing here can be measured on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from common import RESULTS, XRAY, Row, print_rows, rotate

from engine.accel import amp_context, prepare_for_device
from engine.config import ModelConfig
from engine.infer import Predictor
from engine.io import load_image
from engine.model.msfm import MSFM
from engine.model.preprocess import make_batch
from engine.train.losses import LossConfig, body_part_weights, msfm_loss, sample_weights


def run(backbone: str = "efficientnet_lite0", size: int = 448, batch: int = 16, repeats: int = 5, images_dir: Path = XRAY) -> list[Row]:
    if not torch.cuda.is_available():
        print("no CUDA device: GPU benchmarks skipped")
        return []
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MSFM(ModelConfig(backbone=backbone, input_size=size), pretrained="auto")
    files = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in (".png", ".jpg"))[:batch]
    if len(files) < batch:
        sys.exit(f"{images_dir} holds {len(files)} PNG/JPEG images; the benchmark needs {batch}")
    images = [load_image(p) for p in files]
    rows = []
    preds = {amp: Predictor(model, device=dev, batch_size=batch, amp=amp) for amp in (True, False)}

    def infer(amp: bool):
        preds[amp].predict_batch(images)
        torch.cuda.synchronize()

    t = rotate({"amp": lambda: infer(True), "fp32": lambda: infer(False)}, repeats)
    rows.append(Row("gpu", f"{name}: inference fp32 / AMP, batch {batch}", t["fp32"] / t["amp"], None, ">=", "x",
                    f"{1000 * t['amp'] / batch:.1f} vs {1000 * t['fp32'] / batch:.1f} ms/img"))
    model.train()
    prepare_for_device(model, dev)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    x = make_batch(images, size).to(dev).contiguous(memory_format=torch.channels_last)
    y = torch.tensor([i % 2 for i in range(batch)], device=dev)
    scaler = torch.amp.GradScaler("cuda")

    def step(amp: bool):
        ctx, dtype = amp_context(dev, amp)
        opt.zero_grad(set_to_none=True)
        with ctx:
            out = model(x)
            w = sample_weights(y, ["hand"] * batch, body_part_weights(y.tolist(), ["hand"] * batch))
            loss = msfm_loss(out.main_logits, out.object_logits, out.part_logits, y, LossConfig(), w)["total"]
        if dtype == torch.float16:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        torch.cuda.synchronize()

    t = rotate({"amp": lambda: step(True), "fp32": lambda: step(False)}, repeats)
    rows.append(Row("gpu", f"{name}: training images/s AMP (fp32 in detail)", batch / t["amp"], None, ">=", "/s",
                    f"fp32 {batch / t['fp32']:.1f} img/s, AMP speed-up {t['fp32'] / t['amp']:.2f}x"))
    print_rows(rows)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default=str(RESULTS / "gpu.json"))
    ap.add_argument("--images", type=Path, default=XRAY, help="folder of radiographs (PNG or JPEG)")
    a = ap.parse_args()
    rows = run(a.backbone, a.size, a.batch, images_dir=a.images)
    if rows:
        RESULTS.mkdir(parents=True, exist_ok=True)
        open(a.json, "w").write(json.dumps([r.to_json() for r in rows], indent=1))
    sys.exit(0)
