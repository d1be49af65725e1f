"""Two-hot / symlog helpers for distributional reward heads (TD-MPC2 conventions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["symlog", "symexp", "two_hot", "two_hot_inv", "soft_ce"]


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log(1 + |x|)``, elementwise."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`: ``sign(x) * (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


def _bins(num_bins: int, vmin: float, vmax: float, like: torch.Tensor) -> torch.Tensor:
    return torch.linspace(vmin, vmax, num_bins, device=like.device, dtype=like.dtype)


def two_hot(x: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """Encode scalars as two-hot vectors over ``num_bins`` bins of ``symlog(x)``.

    ``x``: ``[...]`` -> ``[..., num_bins]``; each row sums to one.
    """
    bin_size = (vmax - vmin) / (num_bins - 1)
    y = symlog(x).clamp(vmin, vmax)
    pos = (y - vmin) / bin_size
    low = pos.floor().clamp(0, num_bins - 1)
    frac = pos - low
    high = (low + 1).clamp(max=num_bins - 1)
    out = torch.zeros(*x.shape, num_bins, device=x.device, dtype=x.dtype)
    out.scatter_add_(-1, low.long().unsqueeze(-1), (1 - frac).unsqueeze(-1))
    out.scatter_add_(-1, high.long().unsqueeze(-1), frac.unsqueeze(-1))
    return out


def two_hot_inv(
    logits: torch.Tensor, vmin: float, vmax: float, apply_symexp: bool = True
) -> torch.Tensor:
    """Decode logits ``[..., num_bins]`` into scalars ``[...]``.

    With ``apply_symexp=False`` this returns the expectation in symlog space
    (the authors' ``almost_two_hot_inv``, used for policy extraction).
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # bins and their expectation in float32 under autocast
    bins = _bins(logits.shape[-1], vmin, vmax, logits)
    value = (F.softmax(logits, dim=-1) * bins).sum(-1)
    return symexp(value) if apply_symexp else value


def soft_ce(logits: torch.Tensor, target: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """Cross-entropy between ``logits [..., num_bins]`` and two-hot ``target [...]``; returns ``[...]``."""
    return -(two_hot(target, num_bins, vmin, vmax) * F.log_softmax(logits, dim=-1)).sum(-1)
