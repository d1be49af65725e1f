"""The policy prior and Q-ensemble heads stored in TD-MPC2 checkpoints."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pwm_agent.world_model.layers import activation, mlp
from pwm_agent.world_model.math import two_hot_inv

__all__ = ["PolicyPrior", "QEnsemble"]


def _task_input(x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
    if emb is None:
        return x
    return torch.cat([x, emb.expand(*x.shape[:-1], emb.shape[-1])], dim=-1)


class PolicyPrior(nn.Module):
    """TD-MPC2's policy prior ``pi(z, e)``: an MLP to ``[mu, raw_log_std]`` (``2A`` outputs).

    ``log_std = min + (max - min) * (tanh(raw) + 1) / 2``; for multi-task models ``mu`` and
    ``log_std`` are multiplied by the task's action mask, so padded dims are exactly 0.

    :param in_dim: ``L + T`` (latent plus task embedding).
    :param hidden: hidden widths.
    :param action_dim: padded action size ``A``.
    :param action_masks: ``[num_tasks, A]`` masks (``None``: single task, no masking).
    :param log_std_bounds: ``(min, max)`` of the log-std (TD-MPC2: ``(-10, 2)``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: list[int],
        action_dim: int,
        action_masks: torch.Tensor | None,
        log_std_bounds: tuple[float, float] = (-10.0, 2.0),
    ) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_bounds
        self.register_buffer("action_masks", action_masks if action_masks is not None else torch.ones(1, action_dim))

    def forward(self, z: torch.Tensor, emb: torch.Tensor | None, task: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z [..., L]`` and task embedding ``emb`` -> (mean action ``[..., A]`` after tanh, log-std ``[..., A]``)."""
        mu, raw = self.net(_task_input(z, emb)).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1)
        if task is not None:
            mask = self.action_masks[task.long()]
            mu, log_std = mu * mask, log_std * mask
        return torch.tanh(mu), log_std


class QEnsemble(nn.Module):
    """``num_q`` Q heads ``Q(z, e, a)`` evaluated as one batched computation.

    Each head is ``Linear -> Dropout -> LayerNorm -> Mish -> Linear -> LayerNorm -> Mish
    -> Linear(num_bins)``; parameters are stacked over heads (``[num_q, out, in]``),
    as TD-MPC2 stores them. Dropout is active in training mode only.
    """

    def __init__(self, num_q: int, in_dim: int, hidden: int, num_bins: int, dropout: float = 0.01,
                 vmin: float = -10.0, vmax: float = 10.0) -> None:
        super().__init__()
        dims = [(hidden, in_dim), (hidden, hidden), (num_bins, hidden)]
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(num_q, o, i)) for o, i in dims])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(num_q, o)) for o, _ in dims])
        self.ln_weights = nn.ParameterList([nn.Parameter(torch.ones(num_q, hidden)) for _ in range(2)])
        self.ln_biases = nn.ParameterList([nn.Parameter(torch.zeros(num_q, hidden)) for _ in range(2)])
        self.dropout, self.vmin, self.vmax = dropout, vmin, vmax
        self.act = activation("mish")

    def forward(self, z: torch.Tensor, action: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        """``z [..., L]``, ``action [..., A]`` -> logits ``[num_q, ..., num_bins]``."""
        x = torch.cat([_task_input(z, emb), action], dim=-1)
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(len(self.weights[0]), -1, -1)
        for k in range(3):
            h = torch.baddbmm(self.biases[k].unsqueeze(1), h, self.weights[k].transpose(1, 2))
            if k < 2:
                if k == 0 and self.dropout > 0:
                    h = F.dropout(h, self.dropout, self.training)
                h = F.layer_norm(h, h.shape[-1:])
                h = self.act(h * self.ln_weights[k].unsqueeze(1) + self.ln_biases[k].unsqueeze(1))
        return h.reshape(h.shape[0], *lead, h.shape[-1])

    def values(self, z: torch.Tensor, action: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        """Scalar Q values ``[num_q, ...]`` (two-hot inverse with symexp)."""
        return two_hot_inv(self(z, action, emb), self.vmin, self.vmax)
