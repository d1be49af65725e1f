"""Data-parallel world-model training over ``torch.distributed`` (launched by ``torchrun``).

Each rank samples windows from its own shard of the dataset's episodes; after every
backward pass the world-model gradients are averaged over ranks (one flat
all-reduce), which equals the gradient of the global batch's mean loss. Reward
statistics are updated from the rewards of all ranks, so every rank keeps identical
parameters and buffers. Works with the ``gloo`` (CPU) and ``nccl`` (GPU) backends.
"""

from __future__ import annotations

import os
from itertools import chain
from typing import Iterable

import torch
import torch.distributed as dist

__all__ = ["GradientSync", "init_from_environment"]


def init_from_environment() -> bool:
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    Uses ``nccl`` when CUDA is available (and selects the ``LOCAL_RANK`` GPU), else
    ``gloo``. Returns whether this process is part of a multi-process group.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_world_size() > 1


class GradientSync:
    """Averages gradients and gathers statistics over the default process group."""

    def __init__(self) -> None:
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    @classmethod
    def from_environment(cls) -> GradientSync | None:
        """A sync object when a process group of more than one rank is initialised, else ``None``."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls()
        return None

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        for tensor in chain(module.parameters(), module.buffers()):
            dist.broadcast(tensor.data, src=0)

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its mean over ranks (missing ones count as 0)."""
        params = [p for p in params if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # type: ignore[union-attr]
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
            offset += n

    def gather(self, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Concatenate ``tensor`` from every rank along ``dim`` (same shape on every rank)."""
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=dim)

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (a collective stop decision)."""
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())
