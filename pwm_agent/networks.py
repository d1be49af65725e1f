"""Actor and critic-ensemble networks that read world-model latents ``z``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pwm_agent.world_model.layers import activation

__all__ = ["Actor", "CriticEnsemble"]


class Actor(nn.Module):
    """Gaussian policy ``a = tanh(mu(z) + sigma * eps)`` with a learnable,
    state-independent log-std vector clamped from below.

    Hidden blocks are ``Linear -> act -> LayerNorm`` as in the authors' actor.

    :param latent_dim: latent size ``L``.
    :param action_dim: action size ``A``.
    :param hidden_dims: hidden widths.
    :param log_std_init: initial log-std of every action dimension.
    :param log_std_min: lower clamp of the log-std (keeps exploration alive).
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden_dims: list[int],
        act: str = "mish",
        log_std_init: float = -1.0,
        log_std_min: float = -1.427,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dims = [latent_dim, *hidden_dims]
        for i in range(len(hidden_dims)):
            layers += [nn.Linear(dims[i], dims[i + 1]), activation(act), nn.LayerNorm(dims[i + 1])]
        layers.append(nn.Linear(dims[-1], action_dim))
        self.mu = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.log_std_min = log_std_min
        # 1 for the action dims a task uses, 0 for padding (multi-task models).
        self.register_buffer("action_mask", torch.ones(action_dim))

    def std(self) -> torch.Tensor:
        """Current standard deviation ``[A]`` (before the tanh squash)."""
        return self.log_std.clamp(min=self.log_std_min).exp()

    def mean_action(self, z: torch.Tensor) -> torch.Tensor:
        """Deterministic action ``tanh(mu(z))``: ``[..., L] -> [..., A]`` in ``[-1, 1]``."""
        return torch.tanh(self.mu(z)) * self.action_mask

    def sample(self, z: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Reparameterised sample ``tanh(mu + sigma * eps)``: ``[..., L] -> [..., A]``."""
        mu = self.mu(z)
        if noise is None:
            noise = torch.randn_like(mu)
        return torch.tanh(mu + self.std() * noise) * self.action_mask

    def forward(self, z: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.mean_action(z) if deterministic else self.sample(z)


class CriticEnsemble(nn.Module):
    """``K`` value functions ``V_k(z)`` evaluated as one batched computation.

    Each member is an MLP with ``Linear -> act -> LayerNorm`` hidden blocks and a
    scalar output; member weights are stacked as ``[K, in, out]`` so a forward
    pass is a few batched matmuls, never a Python loop over members.

    :param latent_dim: latent size ``L``.
    :param hidden_dims: hidden widths (shared by all members).
    :param n_critics: ensemble size ``K``.
    """

    def __init__(self, latent_dim: int, hidden_dims: list[int], n_critics: int = 3, act: str = "mish") -> None:
        super().__init__()
        self.n_critics = n_critics
        dims = [latent_dim, *hidden_dims, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.norm_weights = nn.ParameterList()
        self.norm_biases = nn.ParameterList()
        for i in range(len(dims) - 1):
            w = torch.empty(n_critics, dims[i], dims[i + 1])
            for k in range(n_critics):
                nn.init.orthogonal_(w[k].T, gain=math.sqrt(2) if i < len(dims) - 2 else 1.0)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(n_critics, 1, dims[i + 1])))
            if i < len(dims) - 2:
                self.norm_weights.append(nn.Parameter(torch.ones(n_critics, 1, dims[i + 1])))
                self.norm_biases.append(nn.Parameter(torch.zeros(n_critics, 1, dims[i + 1])))
        self.act = activation(act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Values of every member: ``z [..., L]`` -> ``[K, ...]``."""
        lead = z.shape[:-1]
        x = z.reshape(1, -1, z.shape[-1])  # [1, N, L], broadcast over members
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x.expand(self.n_critics, -1, -1), w) if i == 0 else torch.baddbmm(b, x, w)
            if i < last:
                x = self.act(x)
                x = F.layer_norm(x, x.shape[-1:]) * self.norm_weights[i] + self.norm_biases[i]
        return x.reshape(self.n_critics, *lead)

    def min_value(self, z: torch.Tensor) -> torch.Tensor:
        """Pessimistic value ``min_k V_k(z)``: ``[..., L]`` -> ``[...]``."""
        return self.forward(z).amin(dim=0)
