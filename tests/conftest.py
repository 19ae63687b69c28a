from __future__ import annotations

import csv
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSFM_SHARED", REPO.parent / "shared"))
XRAY = SHARED / "data" / "xray"
DICOM = SHARED / "data" / "dicom"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# Derived files (a model's ONNX graphs) are made once per test session, never in the user's cache.
os.environ.setdefault("MSFM_CACHE_DIR", tempfile.mkdtemp(prefix="msfm-test-cache-"))


def pytest_configure(config):
    if not XRAY.is_dir() or not DICOM.is_dir():
        raise pytest.UsageError(f"test data not found under {SHARED} (set MSFM_SHARED)")


@pytest.fixture(autouse=True)
def _user_data_dir(tmp_path, monkeypatch):
    """Installed models and fine-tuning runs go to a per-test folder, never the user's."""
    monkeypatch.setenv("MSFM_DATA_DIR", str(tmp_path / "user-data"))


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


def make_tiny_csv(root: Path, rows: list[dict], n_train: int = 12, n_val: int = 8) -> Path:
    """A labels.csv + boxes.csv + images/ (symlinks to real FracAtlas PNGs) with balanced
    train/val splits drawn from the real data."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    picked = []
    for split, n in (("train", n_train), ("val", n_val)):
        for label in ("0", "1"):
            picked += [r for r in rows if r["split"] == split and r["label"] == label][: n // 2]
    with open(XRAY / "boxes.csv", newline="") as fh:
        boxes = [b for b in csv.DictReader(fh)]
    names = {r["file"] for r in picked}
    for r in picked:
        dst = root / "images" / r["file"]
        if not dst.exists():
            dst.symlink_to(XRAY / "images" / r["file"])
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "label", "body_part", "split"])
        w.writeheader()
        for r in picked:
            w.writerow({k: r[k] for k in ("file", "label", "body_part", "split")})
    with open(root / "boxes.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "x0", "y0", "x1", "y1"])
        w.writeheader()
        for b in boxes:
            if b["file"] in names:
                w.writerow(b)
    return root / "labels.csv"


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory, xray_rows) -> Path:
    return make_tiny_csv(tmp_path_factory.mktemp("tiny"), xray_rows)


#: A training configuration small enough for CPU tests (S=128 -> 4x4 grid, parts 64 px).
TINY_TRAIN = dict(backbone="resnet18", pretrained="none", input_size=128, part_size=64, batch_size=4, val_batch_size=8)


# ----- DICOM conformance and a real storage SCP (dicom3tools, dcmtk: scripts/bootstrap.sh installs both)

def dciodvfy_errors(path) -> list[str]:
    tool = shutil.which("dciodvfy")
    assert tool, "dciodvfy (Debian package dicom3tools) is needed: scripts/bootstrap.sh installs it"
    out = subprocess.run([tool, str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dataset_bytes(path) -> bytes:
    """The file after its File Meta group: 128-byte preamble, DICM, then (0002,0000) UL."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    (meta_len,) = struct.unpack("<I", data[132 + 8:132 + 12])
    return data[132 + 12 + meta_len:]


@pytest.fixture
def storescp(tmp_path):
    tool = shutil.which("storescp")
    assert tool, "storescp (Debian package dcmtk) is needed: scripts/bootstrap.sh installs it"
    port, out = free_port(), tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen([tool, "-aet", "TESTPACS", "-od", str(out), "+B", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield port, out
    proc.terminate()
    proc.wait(timeout=10)


