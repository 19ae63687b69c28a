"""Device-specific speed-ups in one place: memory format (CPU and GPU), and on CUDA
mixed precision, cuDNN autotuning and pinned-memory copies; optional ``torch.compile``.
Mixed precision stays off on the CPU: this machine's CPU runs float32 fastest, and
results must not depend on where they were computed.
"""

from __future__ import annotations

import contextlib

import torch


def amp_context(device: torch.device, enabled: bool = True):
    """``(context, dtype)``: autocast to bfloat16 where the GPU supports it, else float16
    (training then needs a GradScaler); a null context on the CPU or when disabled."""
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return contextlib.nullcontext(), None


def prepare_for_device(model: torch.nn.Module, device: torch.device, compile: bool = False) -> torch.nn.Module:
    """channels_last weights (on this CPU too: oneDNN runs Lite0 at 448 px 35-40 % faster
    that way, measured in ``benchmarks/bench_inference.py``), cuDNN autotuning on CUDA;
    ``compile`` wraps the model in ``torch.compile`` (long runs; the first batches pay)."""
    model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: autotuned kernels pay off
    return torch.compile(model) if compile else model  # type: ignore[return-value]  # a compiled module runs as the module


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, C, H, W) in channels_last on ``device``; on CUDA copied from pinned memory
    without a sync."""
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last)


__all__ = ["amp_context", "prepare_for_device", "to_device"]
