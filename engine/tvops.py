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

import torch
from torch import Tensor
from torchvision import ops as _tv_ops
from torchvision.extension import _has_ops

from engine.lite.ops import batched_nms as nms_arrays
from engine.lite.ops import sample_weights

#: True where torchvision's compiled operators loaded (every development install).
COMPILED_OPS: bool = _has_ops()


def opencv_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS per group through OpenCV (:func:`engine.lite.ops.batched_nms`), with
    torchvision's ``batched_nms`` contract.

    Args:
        boxes: (N, 4) xyxy, any units.
        scores: (N,).
        idxs: (N,) int group of each box; boxes of different groups never suppress each other.
    Returns:
        (K,) long indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    keep = nms_arrays(boxes.detach().to("cpu", torch.float64).numpy(), scores.detach().to("cpu", torch.float32).numpy(),
                      idxs.detach().to("cpu").numpy(), iou_threshold)
    return torch.from_numpy(keep).to(boxes.device)


def torch_roi_align(input: Tensor, boxes: Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """RoIAlign without torchvision's compiled code; ``boxes`` (K, 5) rows ``(batch, x1, y1, x2, y2)``.

    Bilinear sampling on a grid and averaging is separable, so each box is two small matrix
    products, ``W_y @ image @ W_x.T``, with the compiled kernel's sample positions, clamping
    and skipping rules (``engine.lite.ops.sample_weights``, which the torch-free predictor's
    crops use too). torchvision's own pure-PyTorch ``_roi_align`` is
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
        wy = torch.from_numpy(sample_weights(y1, y2 - y1 if aligned else max(y2 - y1, 1.0), oh, h, sampling_ratio)).to(input.device)
        wx = torch.from_numpy(sample_weights(x1, x2 - x1 if aligned else max(x2 - x1, 1.0), ow, w, sampling_ratio)).to(input.device)
        # In float64: the sums then do not depend on their order, only the kernel's own
        # float32 rounding separates the two (probabilities within ~1e-6).
        out.append((wy @ input[int(roi[0])].double() @ wx.T).to(input.dtype))
    return torch.stack(out) if out else input.new_zeros((0, input.shape[1], oh, ow))


if COMPILED_OPS:
    batched_nms = _tv_ops.batched_nms
    roi_align = _tv_ops.roi_align
else:
    batched_nms = opencv_batched_nms
    roi_align = torch_roi_align
