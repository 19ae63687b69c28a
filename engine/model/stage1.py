"""Stage 1 (main stage) maps and object box (paper §2.1, §2.4, eq. 3-5; SPEC §3).

All functions are batched. Shapes: F (B, n, g, g), FC weight W (K, n).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor


def activation_maps(features: Tensor, fc_weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Maps of the main stage.

    Returns:
        ``A`` (B, g, g): channel sum of F (F >= 0 after ReLU);
        ``CFM`` (B, K, g, g): ``W_k . F`` for each class k (the CAM of class k, no bias);
        ``Fw`` (B, g, g): L2 norm of CFM over classes (eq. 3).
    """
    f = features.float()
    a = f.sum(dim=1)
    cfm = torch.einsum("kn,bnhw->bkhw", fc_weight.float(), f)
    fw = torch.linalg.vector_norm(cfm, dim=1)
    return a, cfm, fw


def mean_threshold(m: Tensor) -> Tensor:
    """Eq. 4-5: boolean mask (B, h, w) of cells >= the map's own spatial mean."""
    return m >= m.mean(dim=(-2, -1), keepdim=True)


def largest_component(mask: Tensor) -> Tensor:
    """Largest 8-connected component of each mask, in one OpenCV call for the batch.

    The B masks are stacked into one image with a blank row between them, so that no
    component can join two masks, and labelled by ``cv2.connectedComponentsWithStats``.
    Ties in area go to the component met first in raster order. An empty mask stays empty.

    Args:
        mask: (B, h, w) bool.
    Returns:
        (B, h, w) bool, on ``mask``'s device.
    """
    b, h, w = mask.shape
    m = mask.detach().to("cpu", torch.uint8).numpy()
    mosaic = np.zeros((b, h + 1, w), np.uint8)
    mosaic[:, :h] = m
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mosaic.reshape(b * (h + 1), w), connectivity=8)
    labels = labels.reshape(b, h + 1, w)[:, :h]
    area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    owner = stats[:, cv2.CC_STAT_TOP] // (h + 1)  # which mask each component lies in
    area[0] = -1  # label 0 is the background
    best = np.zeros(b, np.int64)
    best_area = np.full(b, -1, np.int64)
    # Components are few (<= g*g/2 per mask); order by (owner, -area, label) and keep the first per owner.
    order = np.lexsort((np.arange(n), -area, owner))
    first = np.ones(n, bool)
    first[1:] = owner[order][1:] != owner[order][:-1]
    chosen = order[first]
    best[owner[chosen]] = chosen
    best_area[owner[chosen]] = area[chosen]
    best[best_area <= 0] = -1  # no foreground component in that mask
    out = labels == best[:, None, None]
    return torch.from_numpy(out).to(mask.device)


def mask_bbox(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Bounding box of each mask's True cells, in grid cells (xyxy, x1/y1 exclusive).

    Returns:
        boxes (B, 4) float; empty (B,) bool, where the box is meaningless.
    """
    b, h, w = mask.shape
    rows = mask.any(dim=2)
    cols = mask.any(dim=1)
    empty = ~rows.any(dim=1)
    r0 = rows.float().argmax(dim=1)
    r1 = h - rows.flip(1).float().argmax(dim=1)
    c0 = cols.float().argmax(dim=1)
    c1 = w - cols.flip(1).float().argmax(dim=1)
    return torch.stack([c0, r0, c1, r1], dim=1).float(), empty


def object_grid_boxes(a: Tensor, fw: Tensor) -> tuple[Tensor, Tensor]:
    """Stage-1 object box on the grid: largest 8-connected component of the A-mask,
    intersected with the Fw-mask, bounding box; the whole grid (the "default box") when
    the intersection is empty.

    Args:
        a, fw: (B, g, g).
    Returns:
        boxes (B, 4) xyxy grid cells; used_default (B,) bool.
    """
    region = largest_component(mean_threshold(a)) & mean_threshold(fw)
    boxes, empty = mask_bbox(region)
    g_h, g_w = a.shape[-2:]
    full = torch.tensor([0.0, 0.0, float(g_w), float(g_h)], device=boxes.device)
    boxes = torch.where(empty[:, None], full.expand_as(boxes), boxes)
    return boxes, empty
