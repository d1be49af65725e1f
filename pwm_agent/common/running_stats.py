"""Running mean/variance estimators (Chan et al.'s parallel update)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TorchRunningMeanStd"]


class TorchRunningMeanStd(nn.Module):
    """Running mean and variance of a scalar stream, kept on the tensors' device.

    Updates never synchronise with the host, so they are safe on the GPU hot path.
    State lives in buffers and is saved with the module's ``state_dict``.
    """

    def __init__(self, epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("count", torch.tensor(float(epsilon)))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold the values of ``x`` (any shape) into the statistics."""
        x = x.detach().float().reshape(-1)
        batch_mean, batch_var, n = x.mean(), x.var(unbiased=False), float(x.numel())
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def std(self, eps: float = 1e-6) -> torch.Tensor:
        """``sqrt(var + eps)`` as a 0-d tensor."""
        return torch.sqrt(self.var + eps)


