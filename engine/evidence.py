"""The evidence map E, its peak and the lesion box (SPEC §3b).

MSFM already computes features for three kinds of views of an image: the whole image
(main stage), the look-closer crop (object stage) and the 7 part windows (parts stage).
Each view's abnormal-class map ``M = (W_abn - W_norm) . F`` (logit units,
:class:`engine.model.msfm.MSFMOutput` ``m_main``/``m_object``/``m_parts``) is upsampled
bilinearly over the source pixels the view covers and pasted into one map over the whole
source image:

    E = max over the part maps that cover a pixel;
        where no part covers it, the object map (inside the object box);
        elsewhere the main map.

No extra forward pass: the maps come from features already computed.

**Grid.** E is stored on a grid of ``He = ceil(H / 4)`` x ``We = ceil(W / 4)`` cells (never
coarser than 1/4 of the source, for memory). Cell ``(i, j)`` covers source pixels
``[j W/We, (j+1) W/We) x [i H/He, (i+1) H/He)`` and holds the value of the upsampled maps
at its centre ``((j + 0.5) W/We, (i + 0.5) H/He)``; a view covers the cell when that centre
lies in the view's box (half-open, ``x0 <= x < x1``).

**Bilinear upsampling.** A map of ``n`` cells across a box ``[x0, x1)`` is read at source x as
the ``align_corners=False`` bilinear resize of the map to the box's pixels reads it: at map
coordinate ``u = (x - x0) / (x1 - x0) * n - 0.5``, clamped to ``[0, n - 1]`` (edge cells are
repeated), which is what ``F.interpolate(..., mode="bilinear")`` does. It is separable, so
each map is read with two small interpolation matrices, ``R_y @ M @ R_x^T``: a few batched
matrix products per image instead of a per-pixel sampler.

**Geometry.** Boxes are xyxy source pixels with continuous edges (:mod:`engine.boxes`): the
object box and the windows come from :meth:`engine.infer.Predictor._to_predictions`, which
maps them through window -> crop -> input -> source; the crop geometry is the same
whether the look-closer crop was cut from the S x S input or from the source.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

if TYPE_CHECKING:  # torch only where E is built from tensors: the torch-free predictor needs the rest
    import torch
    from torch import Tensor

#: E is never coarser than this many source pixels per cell.
EVIDENCE_STRIDE = 4


def evidence_shape(width: int, height: int) -> tuple[int, int]:
    """(He, We) of the evidence grid of a ``width`` x ``height`` source image."""
    return math.ceil(height / EVIDENCE_STRIDE), math.ceil(width / EVIDENCE_STRIDE)


def cell_centres(n_cells: int, extent: float, device: torch.device | str = "cpu") -> Tensor:
    """(n_cells,) float32 source coordinates of the centres of ``n_cells`` equal cells over ``[0, extent)``."""
    import torch

    return (torch.arange(n_cells, device=device, dtype=torch.float32) + 0.5) * (float(extent) / n_cells)


def interp_matrix(coords: Tensor, lo: Tensor, hi: Tensor, n: int) -> Tensor:
    """Bilinear (``align_corners=False``) read-out matrices along one axis.

    Args:
        coords: (C,) source coordinates to read at.
        lo, hi: (V,) start and end, in the same source coordinates, of each view's box.
        n: cells of each view's map along this axis.
    Returns:
        (V, C, n) float32: row c of view v holds the weights of the map's n cells at
        ``coords[c]`` (two non-zero weights summing to 1).
    """
    import torch

    u = (coords[None, :] - lo[:, None]) / (hi - lo).clamp_min(1e-6)[:, None] * n - 0.5
    u = u.clamp(0.0, n - 1)
    i0 = u.floor().long().clamp(max=n - 1)
    i1 = (i0 + 1).clamp(max=n - 1)
    frac = (u - i0.to(u.dtype))[..., None]
    cells = torch.arange(n, device=coords.device)
    return (cells == i0[..., None]) * (1.0 - frac) + (cells == i1[..., None]) * frac


def _read(maps: Tensor, boxes: Tensor, xs: Tensor, ys: Tensor) -> tuple[Tensor, Tensor]:
    """Bilinear values of V maps over their boxes at the grid (ys x xs), and coverage.

    Args:
        maps: (V, h, w) maps; view v spans ``boxes[v]``.
        boxes: (V, 4) xyxy source pixels.
        xs, ys: (We,), (He,) cell-centre coordinates, source pixels.
    Returns:
        values (V, He, We) and covered (V, He, We) bool (centre inside the box, half-open).
    """
    x0, y0, x1, y1 = boxes.unbind(-1)
    ry = interp_matrix(ys, y0, y1, maps.shape[-2])  # (V, He, h)
    rx = interp_matrix(xs, x0, x1, maps.shape[-1])  # (V, We, w)
    values = ry @ maps @ rx.transpose(1, 2)
    cov_y = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])
    cov_x = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])
    return values, cov_y[:, :, None] & cov_x[:, None, :]


class ViewMaps(NamedTuple):
    """Every view's class map read on the evidence grid of one image (logit units).

    ``main`` (He, We) covers the whole image; ``obj`` (He, We) is read everywhere but valid
    where ``obj_cov`` (He, We) bool; ``parts`` (P, He, We) where ``parts_cov`` (P, He, We)."""

    main: Tensor
    obj: Tensor
    obj_cov: Tensor
    parts: Tensor
    parts_cov: Tensor


def view_maps(m_main: Tensor, m_object: Tensor, m_parts: Tensor, object_box: Tensor, windows: Tensor, width: int, height: int) -> ViewMaps:
    """Each view's map upsampled over the source pixels it covers, on E's grid (arguments as
    :func:`evidence_map`). E composes these; ``scripts/measure_evidence_variants.py`` measures
    other compositions of the same reads."""
    import torch

    he, we = evidence_shape(width, height)
    dev = m_main.device
    xs, ys = cell_centres(we, width, dev), cell_centres(he, height, dev)
    whole = torch.tensor([0.0, 0.0, float(width), float(height)], device=dev)
    if m_main.shape == m_object.shape:  # the usual case: one read for both
        base, base_cov = _read(torch.stack([m_main, m_object]).float(), torch.stack([whole, object_box.float()]), xs, ys)
        main, obj, obj_cov = base[0], base[1], base_cov[1]
    else:  # a larger look-closer crop (config.object_size) has a finer object grid
        main = _read(m_main[None].float(), whole[None], xs, ys)[0][0]
        o, oc = _read(m_object[None].float(), object_box[None].float(), xs, ys)
        obj, obj_cov = o[0], oc[0]
    parts, parts_cov = _read(m_parts.float(), windows.float(), xs, ys)
    return ViewMaps(main, obj, obj_cov, parts, parts_cov)


def evidence_map(m_main: Tensor, m_object: Tensor, m_parts: Tensor, object_box: Tensor, windows: Tensor, width: int, height: int) -> Tensor:
    """The evidence map E of one image (see the module docstring).

    Args:
        m_main: (g, g) main-stage class map over the whole image.
        m_object: (go, go) object-stage class map over ``object_box`` (go = g unless the
            look-closer crop is larger than the input, ``ModelConfig.object_size``).
        m_parts: (P, gp, gp) part class maps, part p over ``windows[p]``.
        object_box: (4,) xyxy source pixels of the look-closer crop.
        windows: (P, 4) xyxy source pixels of the part windows.
        width, height: source size W, H.
    Returns:
        (He, We) float32 on the maps' device, logit units (:func:`evidence_shape`).
    """
    return compose_evidence(view_maps(m_main, m_object, m_parts, object_box, windows, width, height))


def compose_evidence(v: ViewMaps) -> Tensor:
    """E from the view maps: the maximum over the part maps covering a cell, else the object
    map inside its box, else the main map. (He, We)."""
    import torch

    part_max = v.parts.masked_fill(~v.parts_cov, float("-inf")).amax(dim=0)
    return torch.where(v.parts_cov.any(dim=0), part_max, torch.where(v.obj_cov, v.obj, v.main))


def evidence_maps(m_main: Tensor, m_object: Tensor, m_parts: Tensor, object_boxes: Tensor, windows: Tensor, widths: list[int], heights: list[int]) -> list[Tensor]:
    """:func:`evidence_map` for a batch: (B, g, g), (B, go, go), (B, P, gp, gp), (B, 4), (B, P, 4)
    (boxes in each image's source pixels) -> B maps (He_i, We_i). Images differ in size, so
    this loops over images; each image's work is a handful of batched tensor ops."""
    return [evidence_map(m_main[i], m_object[i], m_parts[i], object_boxes[i], windows[i], int(widths[i]), int(heights[i]))
            for i in range(m_main.shape[0])]


def lesion_threshold(peak_value: float, minimum: float, tau: float) -> float:
    """The lesion-region threshold of SPEC §3b.

    ``tau * E(peak)`` when the peak is positive (E is in logit units, so 0 is "no evidence
    either way" and the region keeps cells with at least ``tau`` of the peak's evidence).
    When the peak is <= 0 nothing in the image argues for "abnormal" and ``tau * E(peak)``
    would lie *above* the peak; the threshold is then taken over the map's own range,
    ``min + tau * (E(peak) - min)``, so the region still shrinks as tau grows and always
    holds the peak.
    """
    if peak_value > 0:
        return tau * peak_value
    return minimum + tau * (peak_value - minimum)


def peak_and_box(e: np.ndarray, width: int, height: int, tau: float) -> tuple[tuple[float, float], tuple[float, float, float, float], float]:
    """Peak, lesion box and peak value of an evidence map.

    Args:
        e: (He, We) evidence map over the whole ``width`` x ``height`` source image.
        tau: the lesion threshold (:func:`lesion_threshold`), in [0, 1].
    Returns:
        ``peak``: (x, y) source pixels of the centre of E's argmax cell (the first in
        row-major order on ties); ``lesion_box``: xyxy source pixels, continuous cell edges,
        of the 8-connected region of ``E >= threshold`` that holds the peak cell;
        ``E(peak)``.
    """
    e = np.asarray(e, dtype=np.float32)
    he, we = e.shape
    finite = np.where(np.isfinite(e), e, -np.inf)
    i, j = np.unravel_index(int(np.argmax(finite)), e.shape)
    top = float(finite[i, j])
    peak = (float((j + 0.5) * width / we), float((i + 0.5) * height / he))
    if not np.isfinite(top):  # nothing finite to read: the whole image
        return peak, (0.0, 0.0, float(width), float(height)), top
    thr = lesion_threshold(top, float(finite[np.isfinite(finite)].min()), tau)
    mask = (finite >= thr).astype(np.uint8)
    mask[i, j] = 1  # float rounding must never drop the peak from its own region
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    x, y, w, h = (int(v) for v in stats[labels[i, j], :4])
    box = (float(x * width / we), float(y * height / he), float((x + w) * width / we), float((y + h) * height / he))
    return peak, box, top
