"""The stand-ins of torchvision's compiled box operators (engine/tvops.py), which the CPU-only
bundle runs, against the compiled operators of the development install: the same kept
windows, the same crops, the same findings on real radiographs and DICOM."""

import csv

import numpy as np
import pytest
import torch

from engine import tvops
from engine.model import windows as windows_module
from engine.model.windows import WindowGeometry
from tests.conftest import DICOM, XRAY

pytestmark = pytest.mark.skipif(not tvops.COMPILED_OPS, reason="needs torchvision's compiled operators to compare against")


def _radiograph(name: str = "IMG0000188.png") -> torch.Tensor:
    from engine.io import load_image

    pixels = np.asarray(load_image(XRAY / "images" / name).pixels, dtype=np.float32)
    return torch.from_numpy(pixels if pixels.ndim == 3 else pixels[..., None]).permute(2, 0, 1)[None].contiguous()


def test_opencv_nms_keeps_torchvisions_windows_in_its_order():
    from torchvision.ops import batched_nms

    geometry = WindowGeometry.build(10, (((3, 3), (2, 4), (4, 2)), ((5, 5), (4, 6), (6, 4)), ((7, 7),)))
    n = geometry.boxes.shape[0]
    image = _radiograph()
    # Window scores from a real radiograph (its 10 x 10 mean-pooled intensity, as A_o would be)
    # and from maps with ties: a flat map, and one that is zero except for a bright corner.
    real = torch.nn.functional.adaptive_avg_pool2d(image.mean(1, keepdim=True), 10)[:, 0]
    flat = torch.zeros(1, 10, 10)
    corner = torch.zeros(1, 10, 10)
    corner[0, :3, :3] = 1.0
    maps = torch.cat([real / real.max(), flat, corner])
    scores = geometry.scores(maps).reshape(-1)
    group = (torch.arange(3)[:, None] * 3 + geometry.scale[None, :]).reshape(-1)
    boxes = geometry.boxes.repeat(3, 1)
    for iou in (0.25, 0.5, 0.7):
        want = batched_nms(boxes, scores, group, iou)
        got = tvops.opencv_batched_nms(boxes, scores, group, iou)
        assert torch.equal(got, want), iou
    assert tvops.opencv_batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0
    assert n > 0


@pytest.mark.parametrize(("sampling_ratio", "aligned", "out"), [(0, True, (64, 48)), (1, True, (64, 48)), (2, True, (64, 48)), (-1, True, (320, 320)), (0, False, (64, 48)), (2, False, (31, 17))])
def test_pytorch_roi_align_crops_what_the_compiled_operator_crops(sampling_ratio, aligned, out):
    from torchvision.ops import roi_align

    image = _radiograph()
    h, w = image.shape[-2:]
    # The whole image (a full-resolution source crop), a part window, a box over two edges and a thin one.
    rois = torch.tensor([[0, 0, 0, w, h], [0, w * 0.3, h * 0.2, w * 0.6, h * 0.5], [0, -10.0, h - 40.0, 60.0, h + 5.0], [0, 5.5, 7.25, 9.0, h * 0.9]])
    want = roi_align(image, rois, output_size=out, spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=aligned)
    got = tvops.torch_roi_align(image, rois, out, 1.0, sampling_ratio, aligned)
    assert got.shape == want.shape
    assert (got - want).abs().max() < 1e-4


def test_the_stand_ins_give_the_same_findings(monkeypatch):
    from engine import boxes as boxes_module
    from engine.infer import Predictor
    from engine.io import load_image
    from engine.resources import DEFAULT_MODEL

    rows = [r for r in csv.DictReader(open(XRAY / "labels.csv")) if r["split"] == "val"]
    files = [XRAY / "images" / r["file"] for r in rows if r["label"] == "1"][:4] + [XRAY / "images" / r["file"] for r in rows if r["label"] == "0"][:3]
    images = [load_image(f) for f in files] + [load_image(DICOM / "RG3_UNC.dcm")]
    predictor = Predictor.from_checkpoint(DEFAULT_MODEL, "cpu", runtime="torch", enforce_scope=False)
    reference = predictor.predict(images)
    monkeypatch.setattr(windows_module, "batched_nms", tvops.opencv_batched_nms)
    monkeypatch.setattr(boxes_module, "roi_align", tvops.torch_roi_align)
    for a, b in zip(reference, predictor.predict(images)):
        assert a.label == b.label and abs(a.probability - b.probability) < 1e-5, a.file
        for name in ("object_box", "fused_box", "lesion_box"):
            assert np.allclose(getattr(a, name), getattr(b, name), atol=1e-2), (a.file, name)
        assert all(np.allclose(u.box, v.box, atol=1e-2) for u, v in zip(a.windows, b.windows)), a.file
