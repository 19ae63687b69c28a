"""The box and map operators of MSFM's inference in NumPy and OpenCV (no torch).

Each mirrors the PyTorch function named in its docstring, which stays the reference
(training, GPUs); ``tests/engine/test_lite.py`` holds them equal on real radiographs.
Shapes as there: feature maps (B, n, h, w), class-weight rows (K, n), boxes xyxy with
continuous pixel edges (or grid cells), x right, y down.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# -- the main stage's maps and object box (engine.model.stage1, engine.model.msfm) ---------------

def abnormal_contrast(fc_weight: np.ndarray, abnormal_index: int) -> np.ndarray:
    """``W_abn - mean(other rows)``: (K, n) -> (n,) float32 (:func:`engine.model.msfm.abnormal_contrast`)."""
    w = np.asarray(fc_weight, np.float32)
    others = np.concatenate([w[:abnormal_index], w[abnormal_index + 1:]])
    return w[abnormal_index] - others.mean(axis=0)


def class_map(feats: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """``contrast . F`` per cell: (N, n, h, w) -> (N, h, w) float32 (:func:`engine.model.msfm.class_map`)."""
    return np.tensordot(np.asarray(contrast, np.float32), feats, axes=([0], [1])).astype(np.float32, copy=False)


def log_mean_exp(x: np.ndarray, axis: int) -> np.ndarray:
    """``log mean exp`` along ``axis`` without overflow (:func:`engine.model.msfm._log_mean_exp`)."""
    top = x.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(x - top).mean(axis=axis))


def cell_lse_logits(feats: np.ndarray, contrast: np.ndarray, bias_diff: float, abnormal_index: int, r: float) -> np.ndarray:
    """(N, n, h, w) -> (N, 2) float32: 0 for normal, ``bias_diff + (1/r) log mean exp(r d)``
    over the cells' ``d = contrast . F`` for abnormal (:func:`engine.model.msfm.cell_lse_logits`)."""
    d = class_map(feats, contrast).reshape(feats.shape[0], -1).astype(np.float64)
    pooled = log_mean_exp(r * d, axis=1) / r + bias_diff
    out = np.zeros((feats.shape[0], 2), np.float32)
    out[:, abnormal_index] = pooled
    return out


def activation_maps(feats: np.ndarray, fc_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A`` (B, g, g), ``CFM`` (B, K, g, g), ``Fw`` (B, g, g) (:func:`engine.model.stage1.activation_maps`)."""
    a = feats.sum(axis=1, dtype=np.float32)
    cfm = np.tensordot(np.asarray(fc_weight, np.float32), feats, axes=([1], [1])).transpose(1, 0, 2, 3).astype(np.float32)  # (B, K, g, g)
    return a, cfm, np.sqrt((cfm.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)


def mean_threshold(m: np.ndarray) -> np.ndarray:
    """Eq. 4-5: (B, h, w) bool, cells >= the map's own spatial mean."""
    return m >= m.mean(axis=(-2, -1), keepdims=True, dtype=np.float32)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 8-connected component of each (B, h, w) bool mask, in one OpenCV call; ties
    in area go to the component met first in raster order; an empty mask stays empty."""
    b, h, w = mask.shape
    mosaic = np.zeros((b, h + 1, w), np.uint8)  # a blank row between masks: no component joins two
    mosaic[:, :h] = mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mosaic.reshape(b * (h + 1), w), connectivity=8)
    labels = labels.reshape(b, h + 1, w)[:, :h]
    area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    owner = stats[:, cv2.CC_STAT_TOP] // (h + 1)  # which mask each component lies in
    area[0] = -1  # label 0 is the background
    best = np.zeros(b, np.int64)
    best_area = np.full(b, -1, np.int64)
    order = np.lexsort((np.arange(n), -area, owner))  # by (owner, -area, label): the first per owner wins
    first = np.ones(n, bool)
    first[1:] = owner[order][1:] != owner[order][:-1]
    chosen = order[first]
    best[owner[chosen]] = chosen
    best_area[owner[chosen]] = area[chosen]
    best[best_area <= 0] = -1  # no foreground component in that mask
    return labels == best[:, None, None]


def object_grid_boxes(a: np.ndarray, fw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 object box on the grid, (B, 4) xyxy cells, and ``used_default`` (B,) bool
    (:func:`engine.model.stage1.object_grid_boxes`: the A-mask's largest component
    intersected with the Fw-mask, its bounding box; the whole grid when that is empty)."""
    region = largest_component(mean_threshold(a)) & mean_threshold(fw)
    b, h, w = region.shape
    rows, cols = region.any(axis=2), region.any(axis=1)
    empty = ~rows.any(axis=1)
    boxes = np.stack([cols.argmax(axis=1), rows.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)], axis=1).astype(np.float32)
    boxes[empty] = (0.0, 0.0, float(w), float(h))
    return boxes, empty


def window_rank_map(a_o: np.ndarray, m_object: np.ndarray, kind: str) -> np.ndarray:
    """The map whose window means rank the windows (:func:`engine.model.msfm.window_rank_map`)."""
    def unit(m: np.ndarray) -> np.ndarray:
        lo, hi = m.min(axis=(1, 2), keepdims=True), m.max(axis=(1, 2), keepdims=True)
        return (m - lo) / np.maximum(hi - lo, 1e-12)
    if kind == "a_o":
        return a_o.astype(np.float32)
    if kind == "class":
        return m_object.astype(np.float32)
    if kind == "product":
        return (unit(a_o.astype(np.float32)) * unit(m_object.astype(np.float32))).astype(np.float32)
    raise ValueError(f"unknown window_score {kind!r}")


# -- crops (torchvision.ops.roi_align with aligned=True, engine.boxes.crop_resize) ---------------

def _axis_taps(start: float, size: float, n_out: int, n_in: int, sampling_ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """Output bin ``i`` along one axis as taps on input pixels: ``(index, weight)``, both
    (n_out, 2 g), weights float64, the roi_align kernel's samples (``g`` per bin: ``sampling_ratio``, or
    ``ceil(size / n_out)`` when <= 0, at ``start + (i + (k + 0.5) / g) * size / n_out``; a
    sample beyond [-1, n_in] adds zero, one in [-1, 0] reads pixel 0, one at or past the last
    pixel reads the last)."""
    bin_size = size / n_out
    g = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_size)
    if g <= 0:  # an empty box: the kernel divides a zero sum by one
        return np.zeros((n_out, 1), np.intp), np.zeros((n_out, 1))
    pos = start + np.arange(n_out, dtype=np.float64)[:, None] * bin_size + (np.arange(g)[None, :] + 0.5) * bin_size / g
    inside = (pos >= -1.0) & (pos <= n_in)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos)
    at_end = low >= n_in - 1
    low = np.where(at_end, n_in - 1, low)
    frac = np.where(at_end, 0.0, pos - low)
    high = np.where(at_end, low, low + 1)
    index = np.concatenate([low, high], axis=1).astype(np.intp)
    weight = np.concatenate([1.0 - frac, frac], axis=1) * np.concatenate([inside, inside], axis=1) / g
    return index, weight


def sample_weights(start: float, size: float, n_out: int, n_in: int, sampling_ratio: int) -> np.ndarray:
    """:func:`_axis_taps` as a dense (n_out, n_in) float64 matrix (``engine.tvops``' RoIAlign)."""
    index, weight = _axis_taps(start, size, n_out, n_in, sampling_ratio)
    dense = np.zeros((n_out, n_in))
    np.add.at(dense, (np.repeat(np.arange(n_out), index.shape[1]), index.reshape(-1)), weight.reshape(-1))
    return dense


def crop_resize(image: np.ndarray, box: np.ndarray, out_h: int, out_w: int, sampling_ratio: int = 1) -> np.ndarray:
    """One box of a (H, W) image cropped and resized to (out_h, out_w) float32, as
    ``torchvision.ops.roi_align(..., spatial_scale=1, sampling_ratio, aligned=True)`` computes it
    (:func:`engine.boxes.crop_resize`). Bilinear sampling on a grid and averaging is
    separable: rows are gathered and weighted first, then columns, touching only the
    pixels the box reads (a full-resolution source costs what its box holds).

    Args:
        box: (4,) xyxy pixels of ``image`` (continuous edges).
    """
    h, w = image.shape
    x0, y0, x1, y1 = (float(v) - 0.5 for v in box)  # aligned=True: pixel centres at +0.5
    iy, wy64 = _axis_taps(y0, y1 - y0, out_h, h, sampling_ratio)
    ix, wx64 = _axis_taps(x0, x1 - x0, out_w, w, sampling_ratio)
    wy, wx = wy64.astype(np.float32), wx64.astype(np.float32)
    lo, hi = int(ix.min()), int(ix.max()) + 1
    rows = np.matmul(wy[:, None, :], image[iy, lo:hi])[:, 0]  # (out_h, hi - lo): each output row's taps, weighted
    cols = rows[:, ix - lo].transpose(1, 0, 2)  # (out_w, out_h, taps)
    return np.matmul(cols, wx[:, :, None])[:, :, 0].T.astype(np.float32)


# -- part windows (engine.model.windows) ---------------------------------------------------------

def batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS per group (``torchvision.ops.batched_nms``'s contract) through OpenCV.

    Args:
        boxes: (N, 4) xyxy; scores: (N,); groups: (N,) int, boxes of different groups never
            suppress each other.
    Returns:
        (K,) int64 indices of the kept boxes by decreasing score (ties: lower index first).
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    b = np.asarray(boxes, np.float64)
    rects = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
    s = np.asarray(scores, np.float32)
    # OpenCV keeps boxes scoring *above* the threshold: -inf keeps all, as torchvision does.
    kept = cv2.dnn.NMSBoxesBatched(rects.tolist(), s.tolist(), np.asarray(groups).tolist(), float("-inf"), float(iou))
    keep = np.asarray(kept, np.int64).reshape(-1)
    return keep[np.argsort(-s[keep], kind="stable")]


def window_geometry(grid_size: int, scales: tuple[tuple[tuple[int, int], ...], ...]) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """Every sliding window (stride 1) on a g x g grid, in the order of
    :meth:`engine.model.windows.WindowGeometry.build`: boxes (N, 4) xyxy cells float32,
    scale (N,) int64 (0-based), and the (rows, cols, scale) of each window size in turn."""
    boxes, scale_ids, sizes = [], [], []
    for s, group in enumerate(scales):
        for h, w in group:
            rows, cols = np.meshgrid(np.arange(grid_size - h + 1), np.arange(grid_size - w + 1), indexing="ij")
            ys, xs = rows.reshape(-1).astype(np.float32), cols.reshape(-1).astype(np.float32)
            boxes.append(np.stack([xs, ys, xs + w, ys + h], axis=1))
            scale_ids.append(np.full(xs.size, s, np.int64))
            sizes.append((h, w, s))
    return np.concatenate(boxes), np.concatenate(scale_ids), sizes


def window_means(maps: list[np.ndarray], sizes: list[tuple[int, int, int]]) -> np.ndarray:
    """Mean of each scale's map (B, g, g) inside every window -> (B, N) float32, the
    windows in :func:`window_geometry` order (``F.avg_pool2d`` with stride 1), from
    float64 integral images."""
    out = []
    for h, w, s in sizes:
        m = maps[s].astype(np.float64)
        c = np.zeros((m.shape[0], m.shape[1] + 1, m.shape[2] + 1))
        c[:, 1:, 1:] = m.cumsum(axis=1).cumsum(axis=2)
        total = c[:, h:, w:] - c[:, :-h, w:] - c[:, h:, :-w] + c[:, :-h, :-w]
        out.append((total / (h * w)).reshape(m.shape[0], -1))
    return np.concatenate(out, axis=1).astype(np.float32)


def select_windows(maps: list[np.ndarray], geometry: tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]],
                   per_scale: tuple[int, ...], iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep ``per_scale[s]`` windows per scale by greedy NMS, as
    :func:`engine.model.windows.select_windows`: within a scale by decreasing score, the
    last kept one repeated when NMS leaves fewer.

    Args:
        maps: one (B, g, g) ranking map per scale.
    Returns:
        boxes (B, P, 4) xyxy cells; scores (B, P) float32; scale (P,) int64, 0-based.
    """
    boxes, win_scale, sizes = geometry
    scores = window_means(maps, sizes)  # (B, N)
    b, n = scores.shape
    n_scales = len(per_scale)
    group = (np.arange(b)[:, None] * n_scales + win_scale[None, :]).reshape(-1)
    keep = batched_nms(np.tile(boxes, (b, 1)), scores.reshape(-1), group, iou)
    slot_scale = np.concatenate([np.full(k, s, np.int64) for s, k in enumerate(per_scale)])
    chosen = np.zeros((b, len(slot_scale)), np.int64)
    for img in range(b):
        slot = 0
        for s, k in enumerate(per_scale):
            kept = keep[group[keep] == img * n_scales + s]
            for r in range(k):
                chosen[img, slot] = kept[min(r, len(kept) - 1)]
                slot += 1
    return boxes[chosen % n], scores.reshape(-1)[chosen], slot_scale


# -- the evidence map (engine.evidence) ----------------------------------------------------------

def interp_matrix(coords: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    """(V, C, n) float32 bilinear (``align_corners=False``) read-out weights of V views'
    n-cell maps at ``coords`` (:func:`engine.evidence.interp_matrix`)."""
    u = (coords[None, :] - lo[:, None]) / np.maximum(hi - lo, 1e-6)[:, None] * n - 0.5
    u = np.clip(u, 0.0, n - 1).astype(np.float32)
    i0 = np.minimum(np.floor(u).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (u - i0)[..., None]
    cells = np.arange(n)
    return ((cells == i0[..., None]) * (1.0 - frac) + (cells == i1[..., None]) * frac).astype(np.float32)


def _read(maps: np.ndarray, boxes: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (V, He, We) of V maps (V, h, w) over their boxes (V, 4) at the grid, and
    coverage (V, He, We) bool (cell centre inside the box, half-open)."""
    x0, y0, x1, y1 = boxes.T
    ry = interp_matrix(ys, y0, y1, maps.shape[-2])
    rx = interp_matrix(xs, x0, x1, maps.shape[-1])
    values = ry @ maps @ rx.transpose(0, 2, 1)
    cov_y = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])
    cov_x = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])
    return values, cov_y[:, :, None] & cov_x[:, None, :]


def evidence_map(m_main: np.ndarray, m_object: np.ndarray, m_parts: np.ndarray, object_box: np.ndarray, windows: np.ndarray,
                 width: int, height: int, stride: int) -> np.ndarray:
    """The evidence map E of one image, (ceil(H / stride), ceil(W / stride)) float32, logit
    units (:func:`engine.evidence.evidence_map`: the part maps' maximum where parts cover a
    cell, else the object map inside the object box, else the main map)."""
    he, we = math.ceil(height / stride), math.ceil(width / stride)
    xs = ((np.arange(we, dtype=np.float32) + 0.5) * np.float32(width / we)).astype(np.float32)
    ys = ((np.arange(he, dtype=np.float32) + 0.5) * np.float32(height / he)).astype(np.float32)
    whole = np.array([0.0, 0.0, width, height], np.float32)
    main = _read(m_main[None], whole[None], xs, ys)[0][0]
    o, oc = _read(m_object[None], np.asarray(object_box, np.float32)[None], xs, ys)
    parts, parts_cov = _read(m_parts.astype(np.float32), np.asarray(windows, np.float32), xs, ys)
    part_max = np.where(parts_cov, parts, -np.inf).max(axis=0)
    e = np.where(oc[0], o[0], main)
    return np.where(parts_cov.any(axis=0), part_max, e).astype(np.float32)
