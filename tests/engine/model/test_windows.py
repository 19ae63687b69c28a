"""Stage-2 windows: geometry, scoring by average pooling, per-scale NMS (torchvision)."""

import pytest
import torch
from torchvision.ops import nms

from engine.config import DEFAULT_WINDOW_SCALES, ModelConfig
from engine.errors import ConfigError
from engine.model.windows import WindowGeometry, select_windows
from reference.msfm import np_nms


def test_window_counts_per_ratio_on_14_grid():
    geo = WindowGeometry.build(14, DEFAULT_WINDOW_SCALES)
    start = 0
    for (h, w) in geo.sizes:
        n = (14 - h + 1) * (14 - w + 1)
        block = geo.boxes[start : start + n]
        assert torch.all(block[:, 2] - block[:, 0] == w) and torch.all(block[:, 3] - block[:, 1] == h)
        start += n
    assert start == len(geo.boxes)
    counts = {hw: (14 - hw[0] + 1) * (14 - hw[1] + 1) for hw in geo.sizes}
    assert counts[(6, 6)] == 81 and counts[(5, 7)] == 80 and counts[(7, 5)] == 80
    assert counts[(8, 8)] == 49 and counts[(6, 10)] == 45 and counts[(7, 9)] == 48
    assert counts[(10, 10)] == 25 and counts[(9, 11)] == 24 and counts[(8, 12)] == 21
    per_scale = torch.bincount(geo.scale).tolist()
    assert per_scale == [241, 235, 115]
    assert geo.boxes.min() >= 0 and geo.boxes.max() <= 14


def test_scores_are_window_means():
    a = torch.arange(14 * 14, dtype=torch.float32).reshape(1, 14, 14) ** 0.5
    geo = WindowGeometry.build(14, DEFAULT_WINDOW_SCALES)
    scores = geo.scores(a)[0]
    for idx in (0, 100, 300, 590):
        x0, y0, x1, y1 = [int(v) for v in geo.boxes[idx]]
        assert scores[idx].item() == pytest.approx(a[0, y0:y1, x0:x1].mean().item(), rel=1e-5)


def test_torchvision_nms_on_known_iou_boxes():
    # Box 1 overlaps box 0 with IoU 1/3 (> 0.25), box 2 with IoU 1/7 (< 0.25).
    boxes = torch.tensor([[0, 0, 4, 4], [2, 0, 6, 4], [3, 0, 7, 4], [10, 10, 12, 12]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    keep = nms(boxes, scores, 0.25).tolist()
    assert keep == [0, 2, 3]
    assert keep == np_nms(boxes.numpy(), scores.numpy(), 0.25)


def test_select_windows_matches_per_scale_reference_and_repeats_when_short():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 14, 14, generator=gen) * 5
    geo = WindowGeometry.build(14, DEFAULT_WINDOW_SCALES)
    boxes, scores, scale = select_windows(a, geo, (2, 2, 3), 0.25)
    assert boxes.shape == (3, 7, 4) and scores.shape == (3, 7)
    assert scale.tolist() == [0, 0, 1, 1, 2, 2, 2]
    all_scores = geo.scores(a)
    for b in range(3):
        for s, k, slots in ((0, 2, [0, 1]), (1, 2, [2, 3]), (2, 3, [4, 5, 6])):
            idx = (geo.scale == s).nonzero().flatten()
            keep = np_nms(geo.boxes[idx].numpy(), all_scores[b, idx].numpy(), 0.25)
            keep = (keep + [keep[-1]] * k)[:k]
            expect = geo.boxes[idx][keep]
            assert torch.equal(boxes[b, slots], expect), (b, s)
    # On a 14x14 grid any two scale-3 windows overlap with IoU > 0.25: NMS keeps one, and
    # the remaining slots repeat it (SPEC §3).
    assert torch.equal(boxes[0, 4], boxes[0, 5]) and torch.equal(boxes[0, 5], boxes[0, 6])


def test_window_that_does_not_fit_the_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="does not fit"):
        ModelConfig(input_size=224, window_scales=DEFAULT_WINDOW_SCALES)  # 7x7 grid cannot hold 8x8
    cfg = ModelConfig(input_size=224, window_scales=(((3, 3),), ((4, 4),), ((5, 5),)))
    assert cfg.grid_size == 7 and cfg.num_windows == 7


def test_default_windows_scale_with_the_grid():
    assert ModelConfig(input_size=448).window_scales == DEFAULT_WINDOW_SCALES
    small = ModelConfig(input_size=320)  # g = 10
    assert small.window_scales[0] == ((4, 4), (4, 5), (5, 4))
    assert small.window_scales[2][-1] == (9, 6)
    assert all(1 <= h <= 10 and 1 <= w <= 10 for sc in small.window_scales for h, w in sc)
    tiny = ModelConfig(input_size=64)  # g = 2: everything clamps into the grid
    assert all(h <= 2 and w <= 2 for sc in tiny.window_scales for h, w in sc)
    assert ModelConfig.from_dict(small.to_dict()) == small
