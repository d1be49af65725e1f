"""Running mean/variance estimators (Chan et al.'s parallel update)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TorchRunningMeanStd"]


class TorchRunningMeanStd(nn.Module):
    """Running mean and variance of a stream of scalars (``shape=()``) or of vectors
    (``shape=(D,)``, per feature), kept on the tensors' device.

    Updates never synchronise with the host, so they are safe on the GPU hot path.
    State lives in buffers and is saved with the module's ``state_dict``.
    """

    def __init__(self, epsilon: float = 1e-4, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("var", torch.ones(self.shape))
        self.register_buffer("count", torch.tensor(float(epsilon)))

    @torch.no_grad()
    def update(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Fold ``x`` ``[..., *shape]`` into the statistics (all leading dims are samples);
        ``weights`` (``x``'s leading shape, e.g. a 0/1 mask) weight each sample."""
        x = x.detach().float().reshape(-1, *self.shape)
        n: torch.Tensor | float
        if weights is None:
            batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), float(x.shape[0])
        else:
            w = weights.detach().float().reshape(-1, *([1] * len(self.shape)))
            n = w.sum().clamp(min=1e-8)
            batch_mean = (w * x).sum(0) / n
            batch_var = (w * (x - batch_mean) ** 2).sum(0) / n
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def std(self, eps: float = 1e-6) -> torch.Tensor:
        """``sqrt(var + eps)`` of shape ``shape``."""
        return torch.sqrt(self.var + eps)

    def normalize(self, x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps)`` for ``x [..., *shape]`` (differentiable in ``x``)."""
        return (x - self.mean) / torch.sqrt(self.var + eps)


