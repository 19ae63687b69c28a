"""The two box operators of torchvision the engine runs, with or without its compiled code.

torchvision's compiled operators (``_C_stable.so``) load only beside the torch they were
built for. The CPU-only bundle runs CPU torch 2.13 with PyPI's torchvision 0.29 (no CPU
torchvision is published there; SPEC §9), whose operators link the CUDA torch and do not
load. Chosen once, at import:

- ``roi_align``: torchvision's compiled operator, else the same sampling computed as two
  matrix products per box (``torch_roi_align``; why not torchvision's pure-PyTorch
  ``_roi_align``: see there).
- ``batched_nms``: torchvision's, else OpenCV's ``cv2.dnn.NMSBoxesBatched``.

Both stand-ins are compared with the compiled operators on real radiographs in
``tests/engine/test_tvops.py``: the same windows and crops.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision import ops as _tv_ops
from torchvision.extension import _has_ops

#: True where torchvision's compiled operators loaded (every development install).
COMPILED_OPS: bool = _has_ops()


def opencv_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS per group through OpenCV, with torchvision's ``batched_nms`` contract.

    Args:
        boxes: (N, 4) xyxy, any units.
        scores: (N,).
        idxs: (N,) int group of each box; boxes of different groups never suppress each other.
    Returns:
        (K,) long indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    b = boxes.detach().to("cpu", torch.float64).numpy()
    rects = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
    s = scores.detach().to("cpu", torch.float32).numpy()
    # OpenCV keeps boxes scoring *above* the threshold: -inf keeps all, as torchvision does.
    kept = cv2.dnn.NMSBoxesBatched(rects.tolist(), s.tolist(), idxs.detach().cpu().tolist(), float("-inf"), float(iou_threshold))
    keep = torch.as_tensor(np.asarray(kept, dtype=np.int64).reshape(-1))
    order = torch.sort(scores.detach().cpu()[keep], descending=True, stable=True).indices
    return keep[order].to(boxes.device)


def torch_roi_align(input: Tensor, boxes: Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign without torchvision's compiled code; ``boxes`` (K, 5) rows ``(batch, x1, y1, x2, y2)``.

    Bilinear sampling on a grid and averaging is separable, so each box is two small matrix
    products, ``W_y @ image @ W_x.T``, with the compiled kernel's sample positions, clamping
    and skipping rules (``_sample_weights``). torchvision's own pure-PyTorch ``_roi_align`` is
    not used: it needs ``torch.compile`` (a C++ compiler at run time) to be practical, with
    adaptive sampling it samples every image pixel for every output pixel (terabytes for
    one radiograph), and it reads samples beyond the image edge that the kernel skips.

    Returns:
        (K, C, output_size[0], output_size[1]).
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    h, w = input.shape[-2:]
    offset = 0.5 if aligned else 0.0
    out = []
    for roi in boxes.detach().to("cpu", torch.float64).tolist():
        x1, y1, x2, y2 = (v * spatial_scale - offset for v in roi[1:])
        wy = _sample_weights(y1, y2 - y1 if aligned else max(y2 - y1, 1.0), oh, h, sampling_ratio).to(input.device)
        wx = _sample_weights(x1, x2 - x1 if aligned else max(x2 - x1, 1.0), ow, w, sampling_ratio).to(input.device)
        # In float64: the sums then do not depend on their order, only the kernel's own
        # float32 rounding separates the two (probabilities within ~1e-6).
        out.append((wy @ input[int(roi[0])].double() @ wx.T).to(input.dtype))
    return torch.stack(out) if out else input.new_zeros((0, input.shape[1], oh, ow))


def _sample_weights(start: float, size: float, n_out: int, n_in: int, sampling_ratio: int) -> Tensor:
    """(n_out, n_in) float64: output bin ``i`` as weights of input pixels along one axis.

    Bin ``i`` of ``size / n_out`` pixels averages ``g`` bilinear samples (``sampling_ratio``,
    or ``ceil(size / n_out)`` when it is <= 0) at ``start + (i + (k + 0.5) / g) * size / n_out``; a sample beyond [-1, n_in] adds zero,
    one in [-1, 0] reads pixel 0, one past the last pixel reads the last (the compiled
    kernel's rules, which are separable: a sample is skipped if either coordinate is out).
    """
    bin_size = size / n_out
    g = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_size)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    if g <= 0:
        return weights  # empty box: the kernel divides a zero sum by one
    k = torch.arange(g, dtype=torch.float64)
    pos = start + torch.arange(n_out, dtype=torch.float64)[:, None] * bin_size + (k[None, :] + 0.5) * bin_size / g  # (n_out, g)
    inside = (pos >= -1.0) & (pos <= n_in)
    pos = pos.clamp(min=0.0)
    low = pos.floor()
    at_end = low >= n_in - 1
    low = torch.where(at_end, torch.full_like(low, n_in - 1), low)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low)
    high = torch.where(at_end, low, low + 1)
    rows = torch.arange(n_out)[:, None].expand_as(pos)
    weights.index_put_((rows[inside], low[inside].long()), ((1.0 - frac) / g)[inside], accumulate=True)
    weights.index_put_((rows[inside], high[inside].long()), (frac / g)[inside], accumulate=True)
    return weights


if COMPILED_OPS:
    batched_nms = _tv_ops.batched_nms
    roi_align = _tv_ops.roi_align
else:
    batched_nms = opencv_batched_nms
    roi_align = torch_roi_align
