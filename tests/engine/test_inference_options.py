"""Inference-only options of SPEC §3b (issue 17.4): larger look-closer crop, lesion-sized
windows, window ranking, FMA variants. Each switch changes what it should and nothing when off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.config import LESION_WINDOW_SIZES, FMAConfig, ModelConfig
from engine.errors import ConfigError
from engine.infer import Predictor
from engine.io import load_image
from engine.model.checkpoint import read_checkpoint
from engine.model.fma import FMA
from engine.model.msfm import MSFM
from engine.resources import DEFAULT_MODEL
from reference.msfm import reference_predict

# A v1-shaped config (the shipped model's geometry) without FMA, so most tests stay cheap.
V1 = {"backbone": "efficientnet_lite0", "input_size": 320, "part_size": 224, "fma": FMAConfig(enabled=False)}


def _model(**changes) -> MSFM:
    torch.manual_seed(0)
    return MSFM(ModelConfig(**{**V1, **changes}), pretrained="none").eval()


@pytest.fixture(scope="module")
def x01() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 1, 320, 320)


def test_defaults_are_the_v1_behaviour():
    cfg = ModelConfig(**V1)
    assert cfg.object_size is None and cfg.crop_size == 320 and cfg.object_grid_size == cfg.grid_size == 10
    assert cfg.lesion_windows is False and cfg.window_score == "a_o" and cfg.lesion_window_score is None and cfg.fma.mode == "paper"
    assert cfg.output_stride == cfg.parts_stride == 32 and ModelConfig(**V1, output_stride=16).parts_stride == 16
    assert cfg.object_window_scales == cfg.window_scales and cfg.num_windows == cfg.num_paper_windows == 7
    # A checkpoint config written before these options existed reads back as before.
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("object_size", "lesion_windows", "lesion_windows_kept", "window_score", "lesion_window_score", "output_stride", "part_output_stride")}
    old["fma"] = {k: v for k, v in old["fma"].items() if k not in ("mode", "saturation_levels")}
    assert ModelConfig.from_dict(json.loads(json.dumps(old))) == cfg


def test_options_are_validated():
    with pytest.raises(ConfigError):
        ModelConfig(**V1, object_size=600)
    with pytest.raises(ConfigError):
        ModelConfig(**V1, window_score="max")
    with pytest.raises(ConfigError):
        FMAConfig(mode="mild")  # a training recipe, not an inference mode
    with pytest.raises(ConfigError):
        ModelConfig(**V1, part_output_stride=8)


def test_object_size_640_gives_a_20x20_object_grid_and_windows_inside_the_crop(x01):
    model = _model(object_size=640)
    cfg = model.config
    assert cfg.object_grid_size == 20
    # Windows cover the same share of the crop: every side doubled on the doubled grid.
    assert cfg.object_window_scales == tuple(tuple((2 * h, 2 * w) for h, w in s) for s in cfg.window_scales)
    with torch.no_grad():
        out = model(x01)
    assert out.a_object.shape == (2, 20, 20) and out.m_object.shape == (2, 20, 20)
    assert out.windows.shape == (2, 7, 4) and out.m_parts.shape == (2, 7, 7, 7)
    assert (out.windows >= 0).all() and (out.windows <= 640).all()
    sides = torch.stack([out.windows[..., 3] - out.windows[..., 1], out.windows[..., 2] - out.windows[..., 0]], -1) / 32
    allowed = {hw for s in cfg.object_window_scales for hw in s}
    assert {tuple(int(v) for v in hw) for hw in sides.reshape(-1, 2).round().tolist()} <= allowed


def test_output_stride_16_gives_finer_object_and_part_maps_from_the_same_weights(x01):
    model = _model(output_stride=16)
    cfg = model.config
    assert cfg.grid_size == 10 and cfg.object_grid_size == 20
    assert cfg.object_window_scales == tuple(tuple((2 * h, 2 * w) for h, w in s) for s in cfg.window_scales)
    with torch.no_grad():
        out = model(x01)
        base = _model()(x01)
    assert out.m_main.shape == (2, 10, 10) and out.a_object.shape == (2, 20, 20) and out.m_object.shape == (2, 20, 20)
    assert out.m_parts.shape == (2, 7, 14, 14)
    torch.testing.assert_close(out.main_logits, base.main_logits)  # the main stage is untouched
    # No second set of weights: the checkpoint is the stride-32 model's.
    assert model.state_dict().keys() == _model().state_dict().keys()
    # The dilated pass equals timm's own output_stride=16 network holding the same weights.
    import timm

    ref = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0, global_pool="", output_stride=16).eval()
    ref.load_state_dict(model.backbone.encoder.state_dict())
    y = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.features(y, 16), ref.forward_features(model.backbone.normalize(y)))
    with pytest.raises(ConfigError):
        ModelConfig(**V1, output_stride=8)


def test_output_stride_16_trains_the_shared_weights(x01):
    model = _model(output_stride=16).train()
    out = model(x01)
    (out.object_logits.sum() + out.part_logits.sum()).backward()
    stem = model.backbone.encoder.conv_stem.weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_object_size_predictions_keep_windows_inside_the_object_box(xray_sample):
    preds = Predictor(_model(object_size=640), device="cpu").predict([load_image(p) for p in xray_sample[:2]])
    for p in preds:
        assert p.maps.a_object.shape == (20, 20) and len(p.windows) == 7
        x0, y0, x1, y1 = p.object_box
        for w in p.windows:
            assert w.box[0] >= x0 - 1e-3 and w.box[1] >= y0 - 1e-3 and w.box[2] <= x1 + 1e-3 and w.box[3] <= y1 + 1e-3
        assert p.maps.evidence.shape == (-(-p.height // 4), -(-p.width // 4))


def test_lesion_windows_add_small_windows_that_feed_the_evidence_only(x01, xray_sample):
    model = _model(lesion_windows=True)
    cfg = model.config
    assert cfg.num_windows == 10 and cfg.num_paper_windows == 7
    with torch.no_grad():
        out = model(x01)
    assert out.windows.shape == (2, 10, 4) and out.part_logits.shape == (2, 10, 2)
    assert out.window_scale.tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 3]
    cell = 32
    small = out.windows[:, 7:]
    sizes = {(round(float(h) / cell), round(float(w) / cell))
             for h, w in zip((small[..., 3] - small[..., 1]).reshape(-1), (small[..., 2] - small[..., 0]).reshape(-1))}
    assert sizes <= set(LESION_WINDOW_SIZES)
    # The parts probability and the fused box read the 7 configured windows only.
    base = Predictor(_model(), device="cpu").predict([load_image(xray_sample[0])])[0]
    p = Predictor(model, device="cpu").predict([load_image(xray_sample[0])])[0]
    assert len(p.windows) == 10 and sorted(w.scale for w in p.windows)[-3:] == [4, 4, 4]
    assert p.stages["parts"] == pytest.approx(float(np.mean(p.part_probabilities[:7])), abs=1e-6)
    assert p.probability == pytest.approx(base.probability, abs=1e-6)
    np.testing.assert_allclose(p.fused_box, base.fused_box, atol=1e-3)


@pytest.mark.parametrize("kind", ["class", "product"])
def test_window_score_ranks_by_the_chosen_map(x01, kind):
    model = _model(window_score=kind)
    with torch.no_grad():
        out = model(x01)
    m, a = out.m_object.double(), out.a_object.double()
    def unit(t):
        return (t - t.amin(dim=(1, 2), keepdim=True)) / (t.amax(dim=(1, 2), keepdim=True) - t.amin(dim=(1, 2), keepdim=True))
    rank_map = m if kind == "class" else unit(a) * unit(m)
    cells = (out.windows / 32).round().long()
    for b in range(2):
        for j in range(7):
            x0, y0, x1, y1 = cells[b, j].tolist()
            assert float(out.window_scores[b, j]) == pytest.approx(float(rank_map[b, y0:y1, x0:x1].mean()), rel=1e-4, abs=1e-4)
        # The top window of scale 1 is the best of all scale-1 windows on that map.
        best = max(float(F.avg_pool2d(rank_map[b][None, None].float(), hw, stride=1).max()) for hw in model.config.window_scales[0])
        assert float(out.window_scores[b, 0]) == pytest.approx(best, rel=1e-4, abs=1e-4)


def test_lesion_window_score_ranks_only_the_lesion_windows(x01):
    with torch.no_grad():
        base = _model(lesion_windows=True)(x01)
        out = _model(lesion_windows=True, lesion_window_score="class")(x01)
    # The configured windows (so the probabilities and the fused box) stay as A_o ranks them.
    torch.testing.assert_close(out.windows[:, :7], base.windows[:, :7])
    torch.testing.assert_close(out.part_logits[:, :7], base.part_logits[:, :7])
    m = out.m_object.double()
    best = [max(float(F.avg_pool2d(m[b][None, None].float(), hw, stride=1).max()) for hw in LESION_WINDOW_SIZES) for b in range(2)]
    assert out.window_scores[:, 7].tolist() == pytest.approx(best, rel=1e-4, abs=1e-4)


def test_fma_saturation_darkens_only_saturated_pixels():
    fma = FMA(FMAConfig(mode="saturation", saturation_levels=4))
    img = torch.full((1, 1, 64, 64), 0.5)
    img[..., 10:20, 10:20] = 1.0  # a burned-in marker
    img[..., 30:40, 30:40] = 0.9  # bright bone, not saturated
    attention = torch.ones(1, 64, 64)  # attention high everywhere: only saturation decides
    f = fma.factor(attention, image=img)
    assert (f[0, 10:20, 10:20] == fma.config.r).all()
    assert (f[0][img[0, 0] < 1.0 - 4 / 255] == 1.0).all()
    with pytest.raises(ValueError):
        fma.factor(attention)  # the mode cannot be read without the image
    paper = FMA(FMAConfig())
    assert (paper.factor(attention) == paper.config.r).all()  # the paper mode darkens it all


def test_fma_off_leaves_the_input_as_it_is(x01):
    torch.manual_seed(0)
    off = MSFM(ModelConfig(**{**V1, "fma": FMAConfig(mode="off")}), pretrained="none").eval()
    assert off.fma is None and not off.config.fma.active
    with torch.no_grad():
        a, b = off(x01), _model()(x01)
    torch.testing.assert_close(a.main_logits, b.main_logits)


@pytest.mark.slow
@pytest.mark.parametrize("strides", [{"output_stride": 16}, {"output_stride": 32, "part_output_stride": 16}], ids=["os16", "parts-os16"])
def test_all_options_match_the_per_image_reference(xray_sample, strides):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**V1, "fma": FMAConfig(mode="saturation")}, object_size=640, lesion_windows=True, window_score="product",
                      lesion_window_score="class", **strides)
    model = MSFM(cfg, pretrained="none").eval()
    images = [load_image(p) for p in xray_sample[:2]]
    preds = Predictor(model, device="cpu", batch_size=2).predict(images)
    for im, p in zip(images, preds):
        ref = reference_predict(model, im)
        assert p.probability == pytest.approx(ref["probability"], abs=1e-4)
        np.testing.assert_allclose(p.object_box, ref["object_box"], atol=1e-3)
        np.testing.assert_allclose(np.array([w.box for w in p.windows]), np.array([w[0] for w in ref["windows"]]), atol=1e-2)
        assert [w.scale for w in p.windows] == [w[2] for w in ref["windows"]]
        np.testing.assert_allclose(p.fused_box, ref["fused_box"], atol=1e-2)
        close = np.abs(p.maps.evidence - ref["evidence"]) <= 1e-3 * max(1.0, float(np.abs(ref["evidence"]).max()))
        assert close.mean() >= 0.995


def test_shipped_default_config_round_trips():
    stored = json.loads(read_checkpoint(DEFAULT_MODEL)["config"])
    cfg = ModelConfig.from_dict(stored)
    again = json.loads(json.dumps(cfg.to_dict()))
    assert ModelConfig.from_dict(again) == cfg
    # Every stored setting reads back as stored (a file older than an option lacks its key;
    # the option's default, the v1 behaviour, then applies).
    for key, value in stored.items():
        if key == "fma":
            assert {k: again["fma"][k] for k in value} == value
        else:
            assert again[key] == value, key


def test_strides_runs_the_stages_at_another_stride_and_restores_the_model(x01):
    model = _model(output_stride=16)
    grid = model.geometry.grid_size
    with torch.no_grad():
        fine = model(x01[:1])
        with model.strides(32):
            assert model.config.output_stride == model.config.parts_stride == 32 and model.geometry.grid_size == grid // 2
            coarse = model(x01[:1])
        assert model.config.output_stride == 16 and model.geometry.grid_size == grid
        again = model(x01[:1])
    assert coarse.m_object.shape[-1] * 2 == fine.m_object.shape[-1] and coarse.m_parts.shape[-1] * 2 == fine.m_parts.shape[-1]
    assert torch.equal(again.m_parts, fine.m_parts)
    with model.strides(None):
        assert model.config.output_stride == 16
