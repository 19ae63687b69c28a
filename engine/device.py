"""Which device the engine computes on: the choices every front end offers (CLI, settings,
fine-tuning) and how ``auto`` resolves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

#: The device choices offered to users; ``auto`` is CUDA when available, else the CPU.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
DeviceChoice = Literal["auto", "cpu", "cuda"]
#: A choice, or any torch device string ("cuda:1") for scripts.
Device = DeviceChoice | str


def resolve_device(device: Device | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU. Asking for CUDA without one is an error."""
    import torch  # here, not at import: the command line's choices and --version need no torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but no CUDA device is available")
    return dev


def cuda_possible() -> bool:
    """Whether ``auto`` could resolve to CUDA, answered without importing torch (seconds on
    a reading-room PC): False when the installed torch has no CUDA library (the CPU-only
    bundle) or no NVIDIA driver is installed; True when it might (``resolve_device`` then
    decides)."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True  # cannot tell from here (an unusual install): let torch decide
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    if lib.is_dir() and not any(lib.glob("*torch_cuda*")):
        return False
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))
    if sys.platform == "darwin":
        return False
    if sys.platform == "win32":
        # The NVIDIA display driver installs the CUDA driver library in System32; CUDA torch
        # loads it from there, so without it torch would find no GPU either.
        import os

        return (Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "nvcuda.dll").is_file()
    return True  # another system: let torch decide


__all__ = ["DEVICES", "Device", "DeviceChoice", "cuda_possible", "resolve_device"]
