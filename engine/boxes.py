"""Box geometry: grid <-> pixel mapping, crop transforms, fusion, batched crop+resize.

Conventions (all functions): boxes are ``(x0, y0, x1, y1)`` = xyxy with x right, y down.
Pixel boxes use continuous pixel-edge coordinates: a box covering columns 3..5 of an
image is ``x0 = 3, x1 = 6``. Grid boxes count feature-grid cells the same way. Each
docstring says which image's pixels a box lives in. IoU and NMS come from
``torchvision.ops``; nothing here re-implements them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from engine.tvops import roi_align


def grid_to_pixels(grid_boxes: Tensor, input_size: int, grid_size: int) -> Tensor:
    """Grid-cell boxes (..., 4) on a g x g grid -> pixel boxes (..., 4) of the S x S image."""
    return grid_boxes * (input_size / grid_size)


def crop_to_parent(boxes: Tensor, crop_boxes: Tensor, crop_size: int) -> Tensor:
    """Map boxes in a resized crop back to the image the crop was cut from.

    Args:
        boxes: (B, N, 4) xyxy pixels of the ``crop_size`` x ``crop_size`` resized crop.
        crop_boxes: (B, 4) xyxy pixels, in the parent image, of the region that was cropped.
        crop_size: side of the resized crop.
    Returns:
        (B, N, 4) xyxy pixels of the parent image.
    """
    origin = crop_boxes[:, None, :2].repeat(1, 1, 2)
    scale = ((crop_boxes[:, 2:] - crop_boxes[:, :2]) / crop_size)[:, None, :].repeat(1, 1, 2)
    return origin + boxes * scale


def scale_to_original(boxes: Tensor, input_size: int, widths: Tensor, heights: Tensor) -> Tensor:
    """Pixel boxes (B, ..., 4) of the S x S network input -> pixels of each original image.

    The input is a direct (aspect-changing) resize of the original, so x scales by W/S
    and y by H/S. ``widths``/``heights``: (B,) original sizes.
    """
    sx = (widths.to(boxes.dtype) / input_size).view(-1, *([1] * (boxes.dim() - 1)))
    sy = (heights.to(boxes.dtype) / input_size).view(-1, *([1] * (boxes.dim() - 1)))
    factor = torch.cat([sx, sy, sx, sy], dim=-1)
    return boxes * factor


def fusion_weights(n: int, gamma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Eq. 11 weights gamma^i, i = 1..n, normalised to sum 1 (SPEC §3). Shape (n,)."""
    w = torch.tensor([gamma**i for i in range(1, n + 1)], dtype=torch.float64)
    return (w / w.sum()).to(dtype)


def fuse_boxes(boxes: Tensor, scores: Tensor, gamma: float) -> Tensor:
    """Fused box of eq. 11: windows sorted by score, weighted by normalised gamma^i.

    Args:
        boxes: (B, N, 4) xyxy windows, any coordinate frame (the result is in the same one).
        scores: (B, N) window scores; higher first.
    Returns:
        (B, 4) xyxy fused box.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranked = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
    w = fusion_weights(boxes.shape[1], gamma, boxes.dtype).to(boxes.device)
    return (ranked * w[None, :, None]).sum(dim=1)


def crop_resize(images: Tensor, boxes: Tensor, batch_index: Tensor, out_size: int | tuple[int, int], *, sampling_ratio: int = 1) -> Tensor:
    """Crop many boxes out of a batch of images and resize each, in one ``roi_align`` call.

    With ``aligned=True`` and ``sampling_ratio=1`` every output pixel (i, j) is the bilinear
    sample of the source at ``x = x0 + (j + 0.5) * (x1 - x0) / W_out - 0.5`` (and likewise
    for y), clamped to the image: exactly a bilinear resize (``align_corners=False``) of
    the crop, except that border samples read real neighbouring pixels instead of
    repeating the crop's edge. ``sampling_ratio=0`` averages ceil(bin) samples per output
    pixel, an anti-aliased resize for strong downsampling.

    Args:
        images: (B, C, H, W).
        boxes: (N, 4) xyxy pixels of ``images``.
        batch_index: (N,) int, which image each box is cut from.
        out_size: output side, or (height, width).
    Returns:
        (N, C, out_h, out_w).
    """
    rois = torch.cat([batch_index.to(boxes.dtype)[:, None], boxes], dim=1).to(images.dtype)
    return roi_align(images, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=True)
