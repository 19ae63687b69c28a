"""Stage 2 (object stage) window proposals (paper §2.5, SPEC §3).

Sliding windows (stride 1) of the configured sizes on the g x g activation map ``A_o``
of the look-closer crop are scored by average pooling; per scale, greedy NMS at IoU
``nms_iou`` keeps ``windows_per_scale[s]`` windows. All images and scales of a batch go
through one batched NMS call (``engine.tvops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.tvops import batched_nms


@dataclass(frozen=True)
class WindowGeometry:
    """Every sliding window on a g x g grid, in a fixed order.

    Attributes:
        boxes: (N, 4) xyxy grid cells, x1/y1 exclusive.
        scale: (N,) long, 0-based scale of each window.
        sizes: the (rows, cols) sizes in the order their windows appear in ``boxes``.
        size_scale: the 0-based scale of each entry of ``sizes``.
    """

    grid_size: int
    boxes: Tensor
    scale: Tensor
    sizes: tuple[tuple[int, int], ...]
    size_scale: tuple[int, ...] = ()

    @classmethod
    def build(cls, grid_size: int, scales: tuple[tuple[tuple[int, int], ...], ...]) -> "WindowGeometry":
        boxes, scale_ids, sizes, size_scale = [], [], [], []
        for s, group in enumerate(scales):
            for h, w in group:
                ys, xs = torch.meshgrid(torch.arange(grid_size - h + 1), torch.arange(grid_size - w + 1), indexing="ij")
                ys, xs = ys.reshape(-1).float(), xs.reshape(-1).float()
                boxes.append(torch.stack([xs, ys, xs + w, ys + h], dim=1))
                scale_ids.append(torch.full((xs.numel(),), s, dtype=torch.long))
                sizes.append((h, w))
                size_scale.append(s)
        return cls(grid_size, torch.cat(boxes), torch.cat(scale_ids), tuple(sizes), tuple(size_scale))

    def scores(self, a: Tensor | list[Tensor]) -> Tensor:
        """Mean of ``a`` (B, g, g) inside every window -> (B, N), same order as ``boxes``.

        ``a`` may also be a list with one (B, g, g) map per scale: each scale's windows are
        scored on their own map (lesion-sized windows may be ranked differently)."""
        maps = [m.float().unsqueeze(1) for m in a] if isinstance(a, (list, tuple)) else [a.float().unsqueeze(1)] * (max(self.size_scale, default=0) + 1)
        return torch.cat([F.avg_pool2d(maps[s], (h, w), stride=1).flatten(1) for (h, w), s in zip(self.sizes, self.size_scale)], dim=1)


def select_windows(a: Tensor | list[Tensor], geometry: WindowGeometry, per_scale: tuple[int, ...], iou: float) -> tuple[Tensor, Tensor, Tensor]:
    """Score all windows and keep ``per_scale[s]`` per scale by greedy NMS.

    If NMS leaves fewer than ``per_scale[s]`` windows in a scale, the last kept one is
    repeated (SPEC §3). Within a scale the kept windows are in decreasing score order.

    Args:
        a: (B, g, g) map the windows are ranked on (the activation map of the object crop in
            the paper), or a list of one such map per scale.
    Returns:
        boxes (B, P, 4) xyxy grid cells; scores (B, P); scale (P,) long, 0-based;
        with P = sum(per_scale), scales in order.
    """
    b = (a[0] if isinstance(a, (list, tuple)) else a).shape[0]
    n_scales = len(per_scale)
    device = (a[0] if isinstance(a, (list, tuple)) else a).device
    scores = geometry.scores(a)  # (B, N)
    n = scores.shape[1]
    boxes = geometry.boxes.to(device)
    win_scale = geometry.scale.to(device)
    group = (torch.arange(b, device=device)[:, None] * n_scales + win_scale[None, :]).reshape(-1)
    flat_scores = scores.reshape(-1)
    keep = batched_nms(boxes.repeat(b, 1), flat_scores, group, iou)  # sorted by decreasing score

    # Rank of each kept window within its (image, scale) group, preserving score order.
    kept_group = group[keep]
    order = torch.sort(kept_group, stable=True).indices
    keep, kept_group = keep[order], kept_group[order]
    n_groups = b * n_scales
    counts = torch.bincount(kept_group, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(keep.numel(), device=device) - starts[kept_group]
    k_max = max(per_scale)
    table = torch.zeros(n_groups, k_max, dtype=torch.long, device=device)
    sel = rank < k_max
    table[kept_group[sel], rank[sel]] = keep[sel]

    # Slot r of scale s takes rank min(r, count-1): repeats the last kept window if short.
    slot_scale = torch.cat([torch.full((k,), s, dtype=torch.long) for s, k in enumerate(per_scale)]).to(device)
    slot_rank = torch.cat([torch.arange(k) for k in per_scale]).to(device)
    groups = torch.arange(b, device=device)[:, None] * n_scales + slot_scale[None, :]  # (B, P)
    ranks = torch.minimum(slot_rank[None, :], counts[groups] - 1)
    flat_idx = table[groups, ranks]  # (B, P) indices into the flattened (B*N) windows
    win_idx = flat_idx % n
    return boxes[win_idx], flat_scores[flat_idx], slot_scale
