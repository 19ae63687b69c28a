"""DistributedDataParallel helpers: ``torchrun --nproc_per_node=N msfm train ...``.

NCCL on GPUs, gloo on CPU. Rank 0 validates and writes checkpoints; every rank writes
``RUN/ddp/rank<r>.sha256`` (hash of its final weights) so agreement can be checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> DistInfo:
    """Rank and world size as set by torchrun (1 process when absent)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group; on CUDA each process takes GPU ``local_rank``."""
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def sync_buffers(info: DistInfo, module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP keeps parameters equal by averaging gradients, and broadcasts buffers only at the
    start of each forward, so after the last step every rank holds running statistics of
    its own last batch. Called at the end of each epoch so that all ranks agree exactly.
    """
    if info.enabled and dist.is_initialized():
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def broadcast_int(info: DistInfo, value: int, device: torch.device | None = None) -> int:
    """Rank 0's ``value`` on every rank (a decision from wall time must not differ per rank)."""
    if not (info.enabled and dist.is_initialized()):
        return value
    # NCCL carries CUDA tensors only; gloo, CPU ones.
    dev = device if device is not None and dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.int64, device=dev)
    dist.broadcast(t, src=0)
    return int(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
