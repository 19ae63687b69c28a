"""Stage 1 (main stage) maps and object box (paper §2.1, §2.4, eq. 3-5; SPEC §3).

All functions are batched. Shapes: F (B, n, g, g), FC weight W (K, n).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..lite import ops


def activation_maps(features: Tensor, fc_weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Maps of the main stage.

    Returns:
        ``A`` (B, g, g): channel sum of F (F >= 0 after ReLU);
        ``CFM`` (B, K, g, g): ``W_k . F`` for each class k (the CAM of class k, no bias);
        ``Fw`` (B, g, g): L2 norm of CFM over classes (eq. 3).
    """
    # Autocast would run the einsum in bf16/fp16 on a GPU; Fw's mean threshold decides the
    # look-closer box, which must not depend on where it was computed.
    with torch.autocast(features.device.type, enabled=False):
        f = features.float()
        a = f.sum(dim=1)
        cfm = torch.einsum("kn,bnhw->bkhw", fc_weight.float(), f)
        fw = torch.linalg.vector_norm(cfm, dim=1)
    return a, cfm, fw


def mean_threshold(m: Tensor) -> Tensor:
    """Eq. 4-5: boolean mask (B, h, w) of cells >= the map's own spatial mean."""
    return m >= m.mean(dim=(-2, -1), keepdim=True)


def largest_component(mask: Tensor) -> Tensor:
    """Largest 8-connected component of each mask (:func:`engine.lite.ops.largest_component`:
    one OpenCV call for the batch; ties in area go to the component met first in raster
    order; an empty mask stays empty).

    Args:
        mask: (B, h, w) bool.
    Returns:
        (B, h, w) bool, on ``mask``'s device.
    """
    return torch.from_numpy(ops.largest_component(mask.detach().to("cpu").numpy())).to(mask.device)


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
