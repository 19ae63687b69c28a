from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSFM_SHARED", REPO.parent / "shared"))
XRAY = SHARED / "data" / "xray"
DICOM = SHARED / "data" / "dicom"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_configure(config):
    if not XRAY.is_dir() or not DICOM.is_dir():
        raise pytest.UsageError(f"test data not found under {SHARED} (set MSFM_SHARED)")


@pytest.fixture(scope="session")
def xray_rows() -> list[dict]:
    with open(XRAY / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def xray_sample(xray_rows) -> list[Path]:
    """A fixed, varied sample of real radiographs: both labels, several sizes/orientations."""
    sizes = {}
    for r in xray_rows:
        if r["split"] != "val":
            continue
        key = (r["label"], r["body_part"])
        sizes.setdefault(key, []).append(XRAY / "images" / r["file"])
    picked = [v[0] for _, v in sorted(sizes.items())]
    return picked[:10]


@pytest.fixture(scope="session")
def resnet18_model():
    from engine.config import ModelConfig
    from engine.model.msfm import MSFM

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MSFM(ModelConfig(backbone="resnet18"), pretrained="none").eval()


@pytest.fixture(scope="session")
def lite0_model():
    from engine.config import ModelConfig
    from engine.model.msfm import MSFM

    torch.manual_seed(0)
    return MSFM(ModelConfig(backbone="efficientnet_lite0"), pretrained="auto").eval()
