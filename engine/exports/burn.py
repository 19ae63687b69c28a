"""Evidence overlays drawn into an RGB copy of the radiograph (CLI ``--overlays``, and the
pixels of DICOM Secondary Capture exports).

Colours follow the paper's Fig. 3(b): windows in rank order red, orange, yellow, green,
...; the fused box in white; the stage-1 object box in cyan. Boxes are the prediction's
original-pixel xyxy boxes, so the overlay has the image's own size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..io import load_image
from ..types import Prediction
from .writer import WriteGroup

#: RGB colours of window ranks 1..7.
RANK_COLOURS = [(255, 0, 0), (255, 140, 0), (255, 230, 0), (0, 200, 0), (0, 160, 255), (60, 60, 255), (200, 0, 200)]
FUSED_COLOUR = (255, 255, 255)
OBJECT_COLOUR = (0, 255, 255)


#: Layers that can be burned in: activation map A, the abnormal-class CAM, the stage-1
#: object box, the ranked part windows, the fused box, and the probability label.
LAYERS = ("a", "cam", "object", "windows", "fused", "label")
DEFAULT_LAYERS = ("a", "object", "windows", "fused", "label")


def render_overlay(pred: Prediction, pixels: np.ndarray, heatmap_alpha: float = 0.35, layers=DEFAULT_LAYERS) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the radiograph with the chosen ``layers`` drawn in (one heat map:
    A, or the CAM when "cam" is chosen instead of "a")."""
    layers = set(layers)
    grey = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    h, w = grey.shape
    heat_map = pred.maps.cam if "cam" in layers else pred.maps.a if "a" in layers else None
    if heatmap_alpha > 0 and heat_map is not None:
        a = heat_map
        a = (a - a.min()) / (a.max() - a.min() + 1e-12)
        heat = cv2.resize((a * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
        heat = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        rgb = cv2.addWeighted(rgb, 1 - heatmap_alpha, heat, heatmap_alpha, 0)
    t = max(1, round(max(h, w) / 400))

    def rect(box, colour, thick):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(rgb, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thick)

    if "object" in layers:
        rect(pred.object_box, OBJECT_COLOUR, t)
    if "windows" in layers:
        for rank, win in reversed(list(enumerate(pred.windows))):
            rect(win.box, RANK_COLOURS[rank % len(RANK_COLOURS)], t)
    if "fused" in layers:
        rect(pred.fused_box, FUSED_COLOUR, 2 * t)
    if "label" in layers:
        label = f"MSFM p={pred.probability:.2f} {'abnormal' if pred.label else 'normal'}"
        cv2.putText(rgb, label, (4 * t, 14 * t), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * t, (255, 255, 255), t, cv2.LINE_AA)
    return rgb


def save_overlay(pred: Prediction, folder: str | Path, pixels: np.ndarray | None = None) -> Path:
    """Write the overlay PNG of one prediction into ``folder``; returns its path."""
    if pixels is None:
        pixels = load_image(pred.file, pred.frame or 0).pixels
    stem = Path(pred.file).stem + (f"_f{pred.frame}" if pred.frame is not None else "") + "_msfm"
    ok, buf = cv2.imencode(".png", cv2.cvtColor(render_overlay(pred, pixels), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode overlay for {pred.file}")
    group = WriteGroup(folder)  # complete files only, never over an existing one
    group.add(f"{stem}.png", lambda fh: fh.write(buf.tobytes()))
    return group.commit()[0]
