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

from .. import style
from ..io import load_image
from ..layers import Layer, MapLayer, drawing_order
from ..scope import describe
from ..types import Prediction
from .writer import WriteGroup

# Colours as (r, g, b) for OpenCV, from the one definition the viewer uses too (engine.style);
# each layer brings its own (engine.layers).
RESEARCH_COLOUR, TONED_DOWN = style.rgb(style.RESEARCH_COLOUR), style.rgb(style.TONED_DOWN)


#: Layers that can be burned in: activation map A, the abnormal-class CAM, the stage-1
#: object box, the ranked part windows, the fused box, and the probability label.
LAYERS = ("evidence", "a", "cam", "object", "windows", "fused", "lesion", "label")
#: The evidence map E and the lesion box with its peak are the finding; the fused box is
#: the region to look at. Object box and windows are secondary (the viewer's layers).
DEFAULT_LAYERS = ("evidence", "fused", "lesion", "label")
ALPHA_FROM, ALPHA_FULL, NORMAL_MAP_FACTOR, VERDICT_WORDS = style.ALPHA_FROM, style.ALPHA_FULL, style.NORMAL_MAP_FACTOR, style.VERDICT_WORDS


def _heat(m: np.ndarray, w: int, h: int, scale: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) uint8 RGB turbo colours and (h, w) float alpha in [0, 1] of a map
    resized to w x h pixels, on ``scale`` (the model's fixed (lo, hi); None: this map's own range)."""
    lo, hi = (float(scale[0]), float(scale[1])) if scale is not None else (float(m.min()), float(m.max()))
    v = np.clip((m.astype(np.float32) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    v = cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR)
    colours = cv2.cvtColor(cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    return colours, np.clip((v - ALPHA_FROM) / (ALPHA_FULL - ALPHA_FROM), 0.0, 1.0)


def drawn_layers(pred: Prediction, chosen) -> tuple[Layer, ...]:
    """The evidence layers of ``pred`` to burn in: those ``chosen`` by name, and any layer
    the export's choices do not name (a method's own evidence) by its default; only layers
    that belong in a burned-in image. One heat map: the first chosen map in the
    prediction's order (E, else the CAM, else A)."""
    chosen = set(chosen)
    known = set(style.LAYER_LABELS)
    picked = [layer for layer in pred.evidence_layers() if "burn" in layer.outputs
              and (layer.name in chosen or (layer.name not in known and layer.default_visible))]
    maps = [layer for layer in picked if isinstance(layer, MapLayer)]
    return tuple(layer for layer in picked if not isinstance(layer, MapLayer) or layer is maps[0])


def render_overlay(pred: Prediction, pixels: np.ndarray, heatmap_alpha: float = 0.6, layers=DEFAULT_LAYERS, calibration=None) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the radiograph with the chosen ``layers`` of the prediction's
    evidence (:mod:`engine.layers`) drawn in, as the desktop viewer shows them: one heat
    map (the evidence map E, else the CAM, else A), the boxes by role (the lesion box, the
    finding, thickest and on top, in magenta with a cross at the peak).

    ``calibration`` (an :class:`engine.model.calibration.Calibration`) puts the maps on the
    model's fixed scale and draws a normal result toned down (faint map, grey boxes), and
    the label names the verdict; without it maps use their own range."""
    grey = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    h, w = grey.shape
    verdict = calibration.verdict(pred.probability) if calibration is not None else None
    toned = verdict == "normal"
    drawn = drawn_layers(pred, layers)
    for m in (layer for layer in drawn if isinstance(layer, MapLayer)):
        if heatmap_alpha <= 0:
            break
        scale = (calibration.map_scale or {}).get(m.name) if calibration is not None else None
        x0, y0, x1, y1 = (int(round(v)) for v in m.extent)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        colours, alpha = _heat(m.values, x1 - x0, y1 - y0, scale)
        alpha = (alpha * heatmap_alpha * (NORMAL_MAP_FACTOR if toned else 1.0))[..., None]
        part = rgb[y0:y1, x0:x1]
        rgb[y0:y1, x0:x1] = (part * (1.0 - alpha) + colours * alpha).round().astype(np.uint8)
    t = max(1, round(max(h, w) / 400))

    def rect(box, colour, thick):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(rgb, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thick)

    for layer in drawing_order(drawn):
        thick = t if toned else layer.style.burn * t
        order = reversed(range(len(layer.boxes))) if layer.numbered else range(len(layer.boxes))  # rank 1 on top
        for i in order:
            rect(layer.boxes[i], TONED_DOWN if toned else style.rgb(layer.colour_of(i)), thick)
        for x, y in layer.points:
            colour = TONED_DOWN if toned else style.rgb(layer.colour)
            cv2.drawMarker(rgb, (int(round(x)), int(round(y))), colour, cv2.MARKER_CROSS, 8 * t, t, cv2.LINE_AA)
    if "label" in layers:
        word = VERDICT_WORDS[verdict] if verdict is not None else ("abnormal" if pred.label else "normal")
        label = f"MSFM p={pred.probability:.3f} {word}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * t, t)
        cv2.rectangle(rgb, (2 * t, 14 * t - th - 2 * t), (6 * t + tw, 14 * t + base), (0, 0, 0), -1)  # legible on bright film edges
        cv2.putText(rgb, label, (4 * t, 14 * t), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * t, (255, 255, 255), t, cv2.LINE_AA)
    if pred.outside_intended_use is not None:
        # Not a layer the user can switch off: a result made outside the intended use is
        # never shown without saying so.
        _research_mark(rgb, pred.outside_intended_use, t)
    return rgb


def _research_mark(rgb: np.ndarray, reason: str, t: int) -> None:
    """Burn "RESEARCH USE ONLY" and the out-of-scope reason under the label, on a dark
    band so it stays legible on a bright image; the reason wraps to the image width."""
    h, w = rgb.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    # Hershey fonts draw ASCII only ("×" in size reasons would come out as "??").
    text = "".join(c if ord(c) < 128 else "x" if c == "×" else "?" for c in describe(reason))
    lines: list[tuple[str, float]] = [("RESEARCH USE ONLY", 0.45 * t)]
    small, room = 0.35 * t, w - 8 * t
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and cv2.getTextSize(candidate, font, small, t)[0][0] > room:
            lines.append((line, small))
            candidate = word
        line = candidate
    lines.append((line, small))
    y = 16 * t
    for s, scale in lines:
        (tw, th), base = cv2.getTextSize(s, font, scale, t)
        y += th + base + 3 * t
        if y >= h:
            break
        cv2.rectangle(rgb, (2 * t, y - th - 2 * t), (min(w - 1, 6 * t + tw), min(h - 1, y + base)), (0, 0, 0), -1)
        cv2.putText(rgb, s, (4 * t, y), font, scale, RESEARCH_COLOUR, t, cv2.LINE_AA)


def save_overlay(pred: Prediction, folder: str | Path, pixels: np.ndarray | None = None, calibration=None) -> Path:
    """Write the overlay PNG of one prediction into ``folder``; returns its path."""
    if pixels is None:
        pixels = load_image(pred.file, pred.frame or 0).pixels
    stem = Path(pred.file).stem + (f"_f{pred.frame}" if pred.frame is not None else "") + "_msfm"
    if pred.outside_intended_use is not None:
        stem += "_research-use-only"  # the mark in the name too, for file browsers
    ok, buf = cv2.imencode(".png", cv2.cvtColor(render_overlay(pred, pixels, calibration=calibration), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode overlay for {pred.file}")
    group = WriteGroup(folder)  # complete files only, never over an existing one
    group.add(f"{stem}.png", lambda fh: fh.write(buf.tobytes()))
    return group.commit()[0]
