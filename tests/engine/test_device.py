"""How ``auto`` is decided without importing torch (engine.device.cuda_possible): the
desktop analyses torch-free on the CPU only where CUDA cannot be had."""

import subprocess
import sys
from pathlib import Path

import pytest

from engine import device

REPO = Path(__file__).resolve().parents[2]


def test_the_answer_agrees_with_torch_on_this_machine():
    """Where ``cuda_possible`` says no, torch finds no GPU either (it may say yes where
    torch then finds none: ``resolve_device`` decides)."""
    import torch

    if not device.cuda_possible():
        assert not torch.cuda.is_available()


def _installed_torch(tmp_path, monkeypatch, libs: list[str]) -> None:
    """A torch installation folder holding ``libs`` in torch/lib, found by ``find_spec``."""
    import importlib.util

    root = tmp_path / "site" / "torch"
    (root / "lib").mkdir(parents=True)
    for name in libs:
        (root / "lib" / name).write_bytes(b"")
    spec = importlib.util.spec_from_file_location("torch", root / "__init__.py", submodule_search_locations=[str(root)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == "torch" else None)


def _windows_with_driver(tmp_path, monkeypatch, driver: bool) -> None:
    system = tmp_path / "Windows"
    (system / "System32").mkdir(parents=True)
    if driver:
        (system / "System32" / "nvcuda.dll").write_bytes(b"MZ")
    monkeypatch.setenv("SystemRoot", str(system))
    monkeypatch.setattr(sys, "platform", "win32")


def test_a_cpu_only_torch_rules_cuda_out(tmp_path, monkeypatch):
    """The CPU bundle's torch has no ``torch_cuda`` library: no GPU whatever the driver."""
    _installed_torch(tmp_path, monkeypatch, ["torch_cpu.dll"])
    _windows_with_driver(tmp_path, monkeypatch, True)
    assert device.cuda_possible() is False


def test_macos_has_no_cuda(tmp_path, monkeypatch):
    _installed_torch(tmp_path, monkeypatch, ["libtorch_cpu.so", "libtorch_cuda.so"])
    monkeypatch.setattr(sys, "platform", "darwin")
    assert device.cuda_possible() is False


@pytest.mark.parametrize("driver", [True, False])
def test_windows_asks_for_the_nvidia_driver_library(driver, tmp_path, monkeypatch):
    """On Windows the NVIDIA driver puts nvcuda.dll in System32; without it CUDA torch
    finds no GPU, so the desktop stays torch-free."""
    _installed_torch(tmp_path, monkeypatch, ["torch_cpu.dll", "torch_cuda.dll"])
    _windows_with_driver(tmp_path, monkeypatch, driver)
    assert device.cuda_possible() is driver


def test_it_imports_no_torch():
    code = "import sys; from engine.device import cuda_possible; cuda_possible(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
