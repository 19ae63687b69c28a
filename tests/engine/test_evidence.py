"""The evidence map E, peak and lesion box (SPEC §3b, engine/evidence.py).

The end-to-end comparison with the independent per-image reference is in
tests/test_pipeline.py; here: the class maps' units, the paste rules and the bilinear
read-out on synthetic maps, the peak/box read-out, config and JSON.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.config import ModelConfig
from engine.errors import ConfigError
from engine.evidence import evidence_map, evidence_shape, lesion_threshold, peak_and_box
from engine.io import load_image
from engine.model.msfm import abnormal_contrast
from engine.model.preprocess import make_batch
from engine.types import ModelInfo, Prediction, StageMaps


def test_class_maps_are_logit_differences_and_carry_no_gradient(resnet18_model, xray_sample):
    model = resnet18_model
    x = make_batch([load_image(p) for p in xray_sample[:2]], model.config.input_size)
    with torch.no_grad():
        out = model(x)
    fc = model.backbone.fc
    k = model.config.abnormal_index
    db = float(fc.bias[k].detach() - fc.bias[1 - k].detach())
    g, p = model.config.grid_size, model.config.num_windows
    gp = model.config.part_size // 32
    assert out.m_main.shape == (2, g, g) and out.m_object.shape == (2, g, g) and out.m_parts.shape == (2, p, gp, gp)
    # A class map's spatial mean plus the bias difference is the stage's logit difference.
    for m, logits in ((out.m_main, out.main_logits), (out.m_object, out.object_logits), (out.m_parts, out.part_logits)):
        diff = logits[..., k] - logits[..., 1 - k]
        torch.testing.assert_close(m.mean(dim=(-2, -1)) + db, diff, atol=1e-4, rtol=1e-4)
    w = torch.randn(3, 5)
    torch.testing.assert_close(abnormal_contrast(w, 0), w[0] - (w[1] + w[2]) / 2)

    # Training: the maps are read without gradients; the losses still see the part logits.
    model.train()
    try:
        out = model(x[:1])
        assert not out.m_parts.requires_grad and not out.m_main.requires_grad and out.part_logits.requires_grad
    finally:
        model.eval()


def test_parts_win_over_object_over_main_and_overlaps_take_the_max():
    w, h = 40, 24  # E is 6 x 10 cells of 4 x 4 px
    assert evidence_shape(w, h) == (6, 10) and evidence_shape(41, 25) == (7, 11)
    main = torch.zeros(3, 3)
    obj = torch.ones(3, 3)
    parts = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), 3.0)])
    obox = torch.tensor([8.0, 4.0, 32.0, 20.0])
    wins = torch.tensor([[8.0, 4.0, 20.0, 12.0], [16.0, 8.0, 28.0, 20.0]])
    e = evidence_map(main, obj, parts, obox, wins, w, h).numpy()
    assert e.shape == (6, 10)
    xs, ys = (np.arange(10) + 0.5) * 4, (np.arange(6) + 0.5) * 4

    def inside(b):
        b = [float(v) for v in b]
        return ((ys >= b[1]) & (ys < b[3]))[:, None] & ((xs >= b[0]) & (xs < b[2]))[None]

    want = np.zeros((6, 10))
    want[inside(obox)] = 1
    want[inside(wins[0])] = 2
    want[inside(wins[1])] = 3  # the overlap keeps the larger part value
    np.testing.assert_array_equal(e, want)


def test_readout_is_the_bilinear_resize_of_each_map_over_its_box():
    torch.manual_seed(0)
    m = torch.randn(7, 7)
    # A map over the whole image reads as F.interpolate to E's grid (align_corners=False).
    e = evidence_map(m, m, m[None], torch.tensor([0.0, 0.0, 56.0, 40.0]), torch.tensor([[0.0, 0.0, 56.0, 40.0]]), 56, 40)
    want = F.interpolate(m[None, None], size=(10, 14), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(e, want, atol=1e-5, rtol=1e-5)
    # A part over a window of a non-square image reads as grid_sample over that window.
    w, h = 103, 77
    box = torch.tensor([13.3, 20.7, 71.9, 60.2])
    part = torch.randn(1, 7, 7)
    e = evidence_map(torch.full((3, 3), -9.0), torch.full((3, 3), -9.0), part, torch.tensor([0.0, 0.0, w, h]), box[None], w, h)
    he, we = evidence_shape(w, h)
    xs = (torch.arange(we) + 0.5) * w / we
    ys = (torch.arange(he) + 0.5) * h / he
    nx = (xs - box[0]) / (box[2] - box[0]) * 2 - 1
    ny = (ys - box[1]) / (box[3] - box[1]) * 2 - 1
    grid = torch.stack(torch.meshgrid(ny, nx, indexing="ij")[::-1], dim=-1)[None]
    ref = F.grid_sample(part[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0]
    covered = ((ys >= box[1]) & (ys < box[3]))[:, None] & ((xs >= box[0]) & (xs < box[2]))[None]
    torch.testing.assert_close(e[covered], ref[covered], atol=1e-5, rtol=1e-5)
    assert (e[~covered] == -9.0).all()


def test_lesion_box_is_the_8_connected_region_around_the_peak_in_source_pixels():
    e = np.zeros((6, 8), np.float32)
    e[1, 1], e[2, 2], e[3, 3] = 10.0, 6.0, 5.5  # a diagonal chain: 8-connected to the peak
    e[1, 6] = 9.0  # a second blob above the threshold, not connected
    w, h = 30, 20  # cells 3.75 x 3.333 px: boxes land on cell edges, not on pixels
    peak, box, top = peak_and_box(e, w, h, tau=0.5)
    assert top == 10.0
    assert peak == pytest.approx((1.5 * w / 8, 1.5 * h / 6))
    assert box == pytest.approx((1 * w / 8, 1 * h / 6, 4 * w / 8, 4 * h / 6))
    # A higher tau cuts the chain; tau = 1 keeps the peak cell alone.
    assert peak_and_box(e, w, h, 0.58)[1] == pytest.approx((w / 8, h / 6, 3 * w / 8, 3 * h / 6))
    assert peak_and_box(e, w, h, 1.0)[1] == pytest.approx((w / 8, h / 6, 2 * w / 8, 2 * h / 6))
    # tau = 0 with a positive peak: every cell >= 0, the whole image.
    assert peak_and_box(e, w, h, 0.0)[1] == pytest.approx((0, 0, w, h))


def test_a_negative_peak_thresholds_within_the_maps_range():
    # No evidence for "abnormal" anywhere: tau * E(peak) would lie above the peak, so the
    # threshold is min + tau * (peak - min) and the region still holds the peak.
    assert lesion_threshold(-2.0, -10.0, 0.5) == -6.0 and lesion_threshold(4.0, -10.0, 0.5) == 2.0
    e = np.full((5, 5), -10.0, np.float32)
    e[2, 2], e[2, 3], e[4, 0] = -2.0, -5.0, -7.0
    peak, box, top = peak_and_box(e, 20, 20, 0.5)
    assert top == -2.0 and peak == (10.0, 10.0)
    assert box == (8.0, 8.0, 16.0, 12.0)  # -2 and -5 pass -6; -7 does not


def test_lesion_tau_lives_in_the_config_with_a_default_for_older_checkpoints():
    d = ModelConfig(backbone="resnet18").to_dict()
    assert d.pop("lesion_tau") == 0.5
    assert ModelConfig.from_dict(d).lesion_tau == 0.5  # a v1 checkpoint's config
    assert ModelConfig.from_dict({**d, "lesion_tau": 0.7}).lesion_tau == 0.7
    with pytest.raises(ConfigError, match="lesion_tau"):
        ModelConfig(backbone="resnet18", lesion_tau=1.5)


def test_json_carries_peak_lesion_box_and_evidence_only_when_present():
    z = np.zeros((14, 14), np.float32)
    p = Prediction(file="x", width=100, height=80, probability=0.7, label=1, stages={"main": 0.7, "object": 0.7, "parts": 0.7},
                   part_probabilities=(0.7,), object_box=(0, 0, 100, 80), object_box_is_default=False, windows=[],
                   fused_box=(10, 10, 50, 50), maps=StageMaps(a=z, cfm=np.stack([z, z]), cam=z, fw=z, a_object=z),
                   model=ModelInfo(sha256="0", backbone="resnet18", input_size=448))
    assert p.maps.evidence is None and not {"peak", "lesion_box", "evidence"} & set(p.to_json())
    p = replace(p, peak=(12.3456, 20.0), lesion_box=(1.234, 2.0, 30.0, 40.987), evidence_max=3.14159265)
    js = p.to_json()
    assert js["peak"] == [12.35, 20.0] and js["lesion_box"] == [1.23, 2.0, 30.0, 40.99] and js["evidence"] == {"max": 3.141593}


def test_the_default_model_carries_a_tuned_lesion_tau_and_keeps_its_calibration():
    from engine.model.checkpoint import load_checkpoint
    from engine.resources import DEFAULT_MODEL

    ck = load_checkpoint(DEFAULT_MODEL)
    tuning = ck.meta["lesion_tau_tuning"]
    assert ck.config.lesion_tau == tuning["tau"] and 0.2 <= ck.config.lesion_tau <= 0.9
    assert "split=val" in tuning["source"] and tuning["n_images"] > 0
    assert ck.calibration.calibrated and ck.calibration.default.threshold == ck.config.threshold
