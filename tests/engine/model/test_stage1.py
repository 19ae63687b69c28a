"""Stage-1 equations on hand-built tensors (eq. 3-5, component + intersection box)."""

import numpy as np
import pytest
import torch
from skimage.measure import label as sk_label

from engine.model.stage1 import activation_maps, largest_component, mask_bbox, mean_threshold, object_grid_boxes


def test_activation_maps_known_values():
    # F: 2 channels on a 2x2 grid; W: 2 classes.
    f = torch.tensor([[[[1.0, 0.0], [2.0, 0.0]], [[0.0, 3.0], [1.0, 0.0]]]])  # (1, 2, 2, 2)
    w = torch.tensor([[1.0, 2.0], [-1.0, 1.0]])  # (K=2, n=2)
    a, cfm, fw = activation_maps(f, w)
    assert torch.equal(a, torch.tensor([[[1.0, 3.0], [3.0, 0.0]]]))
    # CFM_0 = 1*F0 + 2*F1 ; CFM_1 = -F0 + F1
    assert torch.equal(cfm[0, 0], torch.tensor([[1.0, 6.0], [4.0, 0.0]]))
    assert torch.equal(cfm[0, 1], torch.tensor([[-1.0, 3.0], [-1.0, 0.0]]))
    expected_fw = torch.sqrt(cfm[0, 0] ** 2 + cfm[0, 1] ** 2)
    assert torch.allclose(fw[0], expected_fw)
    assert fw[0, 0, 1] == pytest.approx(np.sqrt(45.0))


def test_mean_threshold_is_greater_or_equal_to_mean():
    m = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]])  # mean 2 -> cells equal to the mean are kept
    assert mean_threshold(m).tolist() == [[[False, True], [True, True]]]


def test_largest_component_uses_8_connectivity():
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    # A diagonal chain of 3 cells (one component under 8-connectivity, three under 4).
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 2, 2] = True
    # A 2-cell horizontal bar.
    mask[0, 4, 3] = mask[0, 4, 4] = True
    out = largest_component(mask)
    assert out[0].nonzero().tolist() == [[0, 0], [1, 1], [2, 2]]


def test_largest_component_batch_matches_skimage_and_never_joins_images():
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(16, 14, 14, generator=gen) > 0.55
    # Image 1 fills its last row and image 2 its first row: a naive stacking would merge them.
    masks[1, -1, :] = True
    masks[2, 0, :] = True
    masks[5] = False  # an empty mask stays empty
    out = largest_component(masks)
    for i in range(16):
        lab = sk_label(masks[i].numpy(), connectivity=2)
        if lab.max() == 0:
            assert not out[i].any()
            continue
        areas = np.bincount(lab.ravel())
        areas[0] = 0
        assert out[i].sum().item() == areas.max()
        # The chosen component is one of skimage's components of maximal area.
        labels_hit = set(np.unique(lab[out[i].numpy()]))
        assert len(labels_hit) == 1 and areas[labels_hit.pop()] == areas.max()


def test_mask_bbox_is_exclusive_grid_box():
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[0, 1:3, 2:5] = True
    boxes, empty = mask_bbox(mask)
    assert boxes[0].tolist() == [2.0, 1.0, 5.0, 3.0]
    assert empty.tolist() == [False, True]


def test_object_box_is_intersection_of_component_and_fw_mask():
    a = torch.zeros(1, 6, 6)
    a[0, 0:3, 0:3] = 5.0  # largest component: the 3x3 top-left block
    a[0, 5, 5] = 9.0  # a separate single-cell component
    fw = torch.zeros(1, 6, 6)
    fw[0, 1:5, 1:5] = 1.0  # overlaps the block in rows/cols 1..2
    boxes, used_default = object_grid_boxes(a, fw)
    assert boxes[0].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert not used_default[0]


def test_empty_intersection_gives_whole_image_default_box():
    a = torch.zeros(1, 6, 6)
    a[0, 0:2, 0:2] = 5.0
    fw = torch.zeros(1, 6, 6)
    fw[0, 4:6, 4:6] = 1.0  # disjoint from A's component
    boxes, used_default = object_grid_boxes(a, fw)
    assert boxes[0].tolist() == [0.0, 0.0, 6.0, 6.0]
    assert used_default[0]
