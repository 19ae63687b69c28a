"""The MSFM network: FMA -> main stage -> object stage -> parts stage (paper Fig. 2).

One shared encoder ``En`` and one shared FC serve all three stages. ``forward`` is the
same in training and inference: it returns every stage's logits (for the losses of
eq. 9) and the geometry (for boxes and overlays). Box selection is not differentiable
and runs without gradients, as in the paper.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..boxes import crop_resize, grid_to_pixels
from ..config import ModelConfig
from .backbones import Backbone
from .fma import FMA
from .stage1 import activation_maps, object_grid_boxes
from .windows import WindowGeometry, select_windows


def abnormal_contrast(fc_weight: Tensor, abnormal_index: int) -> Tensor:
    """The FC row difference ``W_abn - W_norm`` (n,), float32, detached.

    With K = 2 the normal class is the other one; with more classes the mean of the
    other rows stands in for it (the contrast of "abnormal" against the rest).
    """
    w = fc_weight.detach().float()
    others = torch.cat([w[:abnormal_index], w[abnormal_index + 1 :]])
    return w[abnormal_index] - others.mean(dim=0)


def _log_mean_exp(x: Tensor, dim: int) -> Tensor:
    """``log mean exp`` along ``dim``: a smooth maximum equal to ``x`` where all entries are."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def _two_class(pooled: Tensor, abnormal_index: int) -> Tensor:
    """(N,) abnormal-vs-normal logit -> (N, 2) logits, 0 for the normal class."""
    out = torch.zeros(pooled.shape[0], 2, dtype=pooled.dtype, device=pooled.device)
    out[:, abnormal_index] = pooled
    return out


def bag_logits(part_logits: Tensor, abnormal_index: int) -> Tensor:
    """Two-class logits of the bag of part windows (SPEC §3b, ``parts_pool="lse"``).

    Args:
        part_logits: (B, P, 2) logits of the P windows of each image.
    Returns:
        (B, 2): 0 for the normal class and ``log mean_i exp(d_i)`` for the abnormal one,
        with ``d_i`` window i's abnormal-minus-normal logit. Its softmax is the sigmoid of a
        smooth maximum of the ``d_i`` (equal to ``d`` when every window says ``d``), so one
        abnormal window can make the bag abnormal, and a normal bag needs every window normal.
    """
    d = part_logits[..., abnormal_index] - part_logits[..., 1 - abnormal_index]
    return _two_class(_log_mean_exp(d.float(), dim=1), abnormal_index)


def cell_lse_logits(feats: Tensor, fc: nn.Linear, abnormal_index: int, r: float) -> Tensor:
    """Two-class logits of a stage whose cells are pooled by a smooth maximum (``cell_pool="lse"``,
    a v2 option beside SPEC §3b's).

    Args:
        feats: (N, n, h, w) the stage's last feature map F (with its gradient).
        fc: the shared two-class FC (its weight and bias receive gradients too).
        r: sharpness; r -> 0 gives GAP + FC, r -> inf the maximum cell.
    Returns:
        (N, 2) float32: 0 for the normal class and ``b_d + (1/r) log mean_cells exp(r d)``
        for the abnormal one, with ``d = (W_abn - W_norm) . F`` per cell (the map E is read
        from) and ``b_d = b_abn - b_norm``. Its softmax is what GAP's would be if every cell
        said ``d``, and a few high cells can carry it.
    """
    k = abnormal_index
    w = fc.weight[k] - fc.weight[1 - k]
    b = fc.bias[k] - fc.bias[1 - k] if fc.bias is not None else feats.new_zeros(())
    # float32 as in class_map (CUDA training runs under autocast): the pooled cells are E's.
    with torch.autocast(feats.device.type, enabled=False):
        d = torch.einsum("nchw,c->nhw", feats.float(), w.float()).flatten(1)
        return _two_class(_log_mean_exp(r * d, dim=1) / r + b.float(), k)


def class_map(feats: Tensor, contrast: Tensor) -> Tensor:
    """``contrast . F`` per cell: feats (N, n, h, w) -> (N, h, w) float32 (logit units)."""
    # float32 even inside the predictor's bf16 autocast: E's peak is an argmax over these.
    with torch.autocast(feats.device.type, enabled=False):
        return torch.einsum("nchw,c->nhw", feats.detach().float(), contrast.float())


def _unit(m: Tensor) -> Tensor:
    """Min-max normalise each map of (B, h, w) to [0, 1] (a flat map becomes 0)."""
    lo = m.amin(dim=(1, 2), keepdim=True)
    hi = m.amax(dim=(1, 2), keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def window_rank_map(a_o: Tensor, m_object: Tensor, kind: str) -> Tensor:
    """The map whose window means rank the windows (SPEC §3b), (B, go, go) float32.

    ``"a_o"``: the activation map (paper; knows no class). ``"class"``: the object stage's
    abnormal-class map (logit units). ``"product"``: both min-max normalised to [0, 1] per
    image and multiplied, so a window needs strong features *and* abnormal evidence.
    """
    if kind == "a_o":
        return a_o.float()
    if kind == "class":
        return m_object.float()
    if kind == "product":
        return _unit(a_o.float()) * _unit(m_object.float())
    raise ValueError(f"unknown window_score {kind!r}")


@dataclass
class MSFMOutput:
    """Everything one forward pass produces, for a batch of B images.

    Box frames: ``object_box`` is in pixels of the S x S network input; ``windows`` are
    in pixels of the C x C look-closer crop (C = ``config.crop_size``: S unless
    ``object_size`` is set). :mod:`engine.infer` maps both to original image pixels.
    The object stage's grid is go = C / os (g when C = S and os = 32; os =
    ``config.output_stride``). Window slots are ordered by
    scale: the first ``config.num_paper_windows`` are the configured (paper) scales, any
    after them the lesion-sized scale (``config.lesion_windows``).
    """

    main_logits: Tensor  # (B, K)
    # Everything below is None for a main-stage-only pass (warm-up, plain baseline).
    object_logits: Tensor | None = None  # (B, K)
    part_logits: Tensor | None = None  # (B, P, K)
    a: Tensor | None = None  # (B, g, g) activation map of the main stage
    cfm: Tensor | None = None  # (B, K, g, g) class feature maps (CAM per class)
    fw: Tensor | None = None  # (B, g, g) weighted feature map, eq. 3
    a_object: Tensor | None = None  # (B, go, go) activation map of the look-closer crop
    object_box: Tensor | None = None  # (B, 4) xyxy pixels of the S x S input
    object_default: Tensor | None = None  # (B,) bool: the intersection was empty, whole image used
    windows: Tensor | None = None  # (B, P, 4) xyxy pixels of the C x C crop
    window_scores: Tensor | None = None  # (B, P) mean of the ranking map (config.window_score) inside each window
    window_scale: Tensor | None = None  # (P,) 0-based scale of each window slot
    attention: Tensor | None = None  # (B, S, S) FMA attention, None when FMA is off
    # Abnormal-class maps M = (W_abn - W_norm) . F in logit units, no bias (SPEC §3b): a
    # map's spatial mean plus b_abn - b_norm is that stage's logit difference. float32,
    # detached; engine.evidence pastes them into the evidence map E.
    m_main: Tensor | None = None  # (B, g, g) over the S x S input (cell = S/g input pixels)
    m_object: Tensor | None = None  # (B, go, go) over the look-closer crop, i.e. over object_box
    m_parts: Tensor | None = None  # (B, P, gp, gp) over each window, gp = part_size / os


class MSFM(nn.Module):
    """Multistage feature-map network.

    Args:
        config: the model configuration.
        pretrained: how to initialise the backbone (see :class:`Backbone`).
    """

    def __init__(self, config: ModelConfig, pretrained: str | Path = "none") -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config.backbone, config.num_classes, pretrained)
        self.fma = FMA(config.fma) if config.fma.active else None
        self.geometry = WindowGeometry.build(config.object_grid_size, config.object_window_scales)

    @contextlib.contextmanager
    def strides(self, output_stride: int | None) -> Iterator[None]:
        """Run the object and part stages at ``output_stride`` inside the block (None: as
        configured); the configuration and window geometry are restored after it. Training
        uses it to take its steps at stride 32 while validating, and saving, the model as
        configured (the shipped default infers at 16 and was trained at 32: ADR 0012)."""
        cfg = self.config
        if output_stride is None or (cfg.output_stride == output_stride and cfg.parts_stride == output_stride):
            yield
            return
        saved = self.config, self.geometry
        step = cfg.with_(output_stride=output_stride, part_output_stride=None)
        self.config = step
        self.geometry = WindowGeometry.build(step.object_grid_size, step.object_window_scales)
        try:
            yield
        finally:
            self.config, self.geometry = saved

    def forward(self, x01: Tensor, sources: list[Tensor] | None = None, theta: Tensor | float | None = None, main_only: bool = False) -> MSFMOutput:
        """Run the three stages.

        Args:
            x01: (B, 1, S, S) radiographs in [0, 1], directly resized to S x S.
            sources: with ``config.crop_from == "source"``, the (1, H_i, W_i) full-resolution
                images in [0, 1] the look-closer crop is cut from.
            theta: FMA threshold(s), scalar or (B,); the config's when None.
            main_only: run the main stage only (warm-up epochs, the plain baseline).
        """
        cfg = self.config
        s, g = cfg.input_size, cfg.grid_size
        cs, go = cfg.crop_size, cfg.object_grid_size  # look-closer crop side and its grid
        b = x01.shape[0]
        attention = None
        x = x01
        if self.fma is not None and (self.training or not cfg.fma.train_only):
            x, attention = self.fma(x01, theta)

        feats, main_logits = self.backbone(x)
        if main_only:
            return MSFMOutput(main_logits=main_logits, attention=attention)
        with torch.no_grad():
            contrast = abnormal_contrast(self.backbone.fc.weight, cfg.abnormal_index)
            m_main = class_map(feats, contrast)
            a, cfm, fw = activation_maps(feats.detach(), self.backbone.fc.weight.detach())
            grid_box, used_default = object_grid_boxes(a, fw)
            object_box = grid_to_pixels(grid_box, s, g)
            if cfg.crop_from == "source" and sources is not None:
                crop = self._crop_sources(sources, object_box, attention, theta)
            else:
                crop = crop_resize(x, object_box, torch.arange(b, device=x.device), cs)

        feats_o, object_logits = self.backbone(crop, cfg.output_stride)
        if cfg.cell_pool == "lse":
            object_logits = cell_lse_logits(feats_o, self.backbone.fc, cfg.abnormal_index, cfg.cell_pool_r)
        with torch.no_grad():
            a_o = feats_o.detach().float().sum(dim=1)
            m_object = class_map(feats_o, contrast)
            base_map = window_rank_map(a_o, m_object, cfg.window_score)
            rank_map: Tensor | list[Tensor] = base_map
            if cfg.lesion_windows and cfg.lesion_window_score not in (None, cfg.window_score):
                # Lesion-sized windows ranked on their own map; the configured scales keep theirs.
                lesion_map = window_rank_map(a_o, m_object, str(cfg.lesion_window_score))
                rank_map = [base_map] * len(cfg.window_scales or ()) + [lesion_map]
            win_grid, win_scores, win_scale = select_windows(rank_map, self.geometry, cfg.object_windows_per_scale, cfg.nms_iou)
            windows = grid_to_pixels(win_grid, cs, go)
            p = windows.shape[1]
            parts = crop_resize(crop, windows.reshape(-1, 4), torch.arange(b, device=x.device).repeat_interleave(p), cfg.part_size)

        feats_p, part_logits = self.backbone(parts, cfg.parts_stride)
        if cfg.cell_pool == "lse":
            part_logits = cell_lse_logits(feats_p, self.backbone.fc, cfg.abnormal_index, cfg.cell_pool_r)
        with torch.no_grad():
            # Read from features the parts stage computed anyway: no extra forward pass,
            # and the losses (logits only) are unchanged.
            m_parts = class_map(feats_p, contrast)
            m_parts = m_parts.reshape(b, p, *m_parts.shape[-2:])
        return MSFMOutput(
            main_logits=main_logits,
            object_logits=object_logits,
            part_logits=part_logits.reshape(b, p, -1),
            a=a, cfm=cfm, fw=fw, a_object=a_o,
            object_box=object_box, object_default=used_default,
            windows=windows, window_scores=win_scores, window_scale=win_scale,
            attention=attention,
            m_main=m_main, m_object=m_object, m_parts=m_parts,
        )

    def _crop_sources(self, sources: list[Tensor], object_box: Tensor, attention: Tensor | None, theta: Tensor | float | None) -> Tensor:
        """Look-closer crops cut from full-resolution sources (one roi_align per image).

        The FMA mask is recomputed at the source's resolution from the same attention map,
        so the crop shows the same suppression as the S x S input would.
        """
        s, cs = self.config.input_size, self.config.crop_size
        crops = []
        for i, src in enumerate(sources):
            h, w = src.shape[-2:]
            img = src.reshape(1, 1, h, w).to(object_box.device, torch.float32)
            if attention is not None and self.fma is not None:
                att = F.interpolate(attention[i : i + 1, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
                th = theta[i] if isinstance(theta, Tensor) and theta.dim() else theta
                img = img * self.fma.factor(att, th, img).unsqueeze(1)
            box = object_box[i : i + 1] * torch.tensor([w / s, h / s, w / s, h / s], device=object_box.device)
            crops.append(crop_resize(img, box, torch.zeros(1, device=img.device), cs, sampling_ratio=0))
        return torch.cat(crops).to(object_box.dtype)
