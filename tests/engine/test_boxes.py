"""Box mapping, fusion (eq. 11) and batched crop+resize."""

import pytest
import torch
import torch.nn.functional as F

from engine.boxes import crop_resize, crop_to_parent, fuse_boxes, fusion_weights, grid_to_pixels, scale_to_original
from reference.msfm import crop_grid_sample


def test_fusion_weights_are_normalised_powers_of_gamma():
    w = fusion_weights(3, 0.5, torch.float64)
    assert torch.allclose(w, torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=torch.float64))
    assert fusion_weights(7, 1.0).tolist() == pytest.approx([1 / 7] * 7)


def test_fuse_boxes_sorts_by_score_before_weighting():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [100, 100, 110, 110]]])
    scores = torch.tensor([[1.0, 3.0]])  # the second window ranks first
    fused = fuse_boxes(boxes, scores, gamma=0.5)  # weights 2/3, 1/3
    assert torch.allclose(fused[0], torch.tensor([200 / 3, 200 / 3, 230 / 3, 230 / 3]))


def test_grid_to_pixels_and_crop_to_parent():
    assert grid_to_pixels(torch.tensor([1.0, 2, 3, 14]), 448, 14).tolist() == [32, 64, 96, 448]
    crop_boxes = torch.tensor([[100.0, 50, 300, 450]])  # 200 x 400 region of the input
    inner = torch.tensor([[[0.0, 0, 448, 448], [224, 224, 448, 448]]])
    out = crop_to_parent(inner, crop_boxes, 448)
    assert out[0].tolist() == [[100, 50, 300, 450], [200, 250, 300, 450]]


def test_scale_to_original_on_non_square_images():
    boxes = torch.tensor([[0.0, 0, 448, 448], [112, 224, 224, 448]])
    widths, heights = torch.tensor([421, 1760]), torch.tensor([512, 2140])
    out = scale_to_original(boxes, 448, widths, heights)
    assert out[0].tolist() == pytest.approx([0, 0, 421, 512])
    assert out[1].tolist() == pytest.approx([440, 1070, 880, 2140])


def test_crop_resize_equals_sampling_formula_reference():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 40, 56, generator=gen)
    boxes = torch.tensor([[3.0, 5, 30, 33], [0.0, 0, 56, 40], [10.0, 2, 18, 20]])
    idx = torch.tensor([0, 1, 1])
    out = crop_resize(img, boxes, idx, 24)
    for n in range(3):
        ref = crop_grid_sample(img[idx[n] : idx[n] + 1], boxes[n], 24, 24)
        assert torch.allclose(out[n], ref[0], atol=1e-5)


def test_crop_resize_matches_interpolate_inside_the_crop():
    # On a linear ramp bilinear sampling is exact: compare with F.interpolate away from borders.
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    img = (2 * xx + 3 * yy)[None, None]
    box = torch.tensor([[8.0, 16, 40, 48]])
    out = crop_resize(img, box, torch.tensor([0]), 64)[0, 0]
    ref = F.interpolate(img[..., 16:48, 8:40], size=64, mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(out[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-4)
    # Output pixel (0, 0) samples (x, y) = (8 + 0.25 - 0.5, 16 + 0.25 - 0.5).
    assert out[0, 0].item() == pytest.approx(2 * 7.75 + 3 * 15.75, abs=1e-4)
