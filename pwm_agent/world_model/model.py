"""TD-MPC2-style decoder-free world model: encoder, latent dynamics, reward, termination."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pwm_agent.world_model.config import WorldModelConfig
from pwm_agent.world_model.layers import SimNorm, mlp, trunc_normal_init, zero_last_layer
from pwm_agent.world_model.math import two_hot_inv

__all__ = ["WorldModel"]


class WorldModel(nn.Module):
    """Encoder ``h(o, e)``, dynamics ``d(z, e, a)``, reward ``R(z, e, a)`` and an optional
    termination head ``T(z', e)``, where ``e`` is an optional task embedding.

    Tensors may carry any leading dimensions (``[B, ...]`` or time-major
    ``[T, B, ...]``); ``task`` is a ``LongTensor [B]`` of task ids (or ``None``
    for a single-task model) and is broadcast over a leading time axis.

    :param obs_dim: observation size ``O`` (the padded size for multi-task models).
    :param action_dim: action size ``A`` (the padded size for multi-task models).
    :param config: shapes and options, see :class:`WorldModelConfig`.
    :param action_dims: true action size of each task, used to build the action
        masks of a multi-task model (default: every task uses all ``A`` dims).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: WorldModelConfig,
        action_dims: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim, self.config = obs_dim, action_dim, config
        c, e = config, config.task_dim if config.num_tasks > 0 else 0
        self.task_emb = nn.Embedding(c.num_tasks, c.task_dim, max_norm=1.0) if c.num_tasks > 0 else None
        self.encoder = mlp(obs_dim + e, list(c.enc_dims), c.latent_dim, SimNorm(c.simnorm_dim), c.activation)
        za = c.latent_dim + e + action_dim
        self.dynamics = mlp(za, list(c.mlp_dims), c.latent_dim, SimNorm(c.simnorm_dim), c.activation)
        reward_out = c.num_bins if c.reward_head == "twohot" else 1
        self.reward_net = mlp(za, list(c.mlp_dims), reward_out, act=c.activation)
        self.termination_net = (
            mlp(c.latent_dim + e, list(c.mlp_dims), 1, act=c.activation) if c.termination_head else None
        )
        self.register_buffer("action_masks", self._build_masks(action_dims))
        # A bound task (see bind_task): calls without `task` use it, padding inputs.
        self.bound_task: int | None = None
        self.register_buffer("_bound_task_id", torch.zeros((), dtype=torch.long), persistent=False)
        # Multiplier applied to environment rewards before they become targets
        # of a scalar reward head (kept with the model so it is self-contained).
        self.register_buffer("reward_scale", torch.ones(()))
        self.apply(trunc_normal_init)
        zero_last_layer(self.reward_net)
        if self.termination_net is not None:
            # Start by predicting "continue" (P(terminated) ~ 0.7%), not a coin flip.
            nn.init.constant_(self.termination_net[-1].bias, -5.0)

    def _build_masks(self, action_dims: Sequence[int] | None) -> torch.Tensor:
        n = max(self.config.num_tasks, 1)
        masks = torch.ones(n, self.action_dim)
        if action_dims is not None:
            if len(action_dims) != n:
                raise ValueError(f"action_dims has {len(action_dims)} entries for {n} tasks.")
            for i, dim in enumerate(action_dims):
                masks[i, dim:] = 0.0
        return masks

    def bind_task(self, task: int) -> None:
        """Act as a single-task model of task ``task``: calls without ``task`` use it, and
        observations/actions narrower than the padded ``obs_dim``/``action_dim`` are
        zero-padded (the task's own dims, as TD-MPC2's multi-task wrapper pads them)."""
        if self.task_emb is None or not 0 <= task < self.config.num_tasks:
            raise ValueError(f"Cannot bind task {task}: the model has {self.config.num_tasks} task(s).")
        self.bound_task = int(task)
        self._bound_task_id.fill_(int(task))

    def _resolve(self, x: torch.Tensor, task: torch.Tensor | None, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inputs and task ids for a call: a bound task fills in ``task`` and pads ``x`` to ``width``."""
        if task is not None or self.bound_task is None:
            return x, task
        if x.shape[-1] < width:
            x = torch.nn.functional.pad(x, (0, width - x.shape[-1]))
        return x, self._bound_task_id

    @property
    def multitask(self) -> bool:
        """Whether the model has a task embedding."""
        return self.task_emb is not None

    def _with_task(self, x: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Concatenate the task embedding of ``task [B]`` to ``x [..., B, D]``."""
        if self.task_emb is None:
            return x
        if task is None:
            raise ValueError("This world model is multi-task: pass `task`, a LongTensor of task ids [B].")
        emb = self.task_emb(task.long())
        if emb.dim() < x.dim():
            emb = emb.expand(*x.shape[:-1], emb.shape[-1])
        return torch.cat([x, emb], dim=-1)

    def encode(self, obs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Observations ``[..., O]`` -> latents ``[..., L]`` (SimNorm-ed)."""
        obs, task = self._resolve(obs, task, self.obs_dim)
        return self.encoder(self._with_task(obs, task))

    def _za(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        action, task = self._resolve(action, task, self.action_dim)
        return torch.cat([self._with_task(z, task), action], dim=-1)

    def next(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Latent dynamics: ``z [..., L]``, ``action [..., A]`` -> ``z' [..., L]``."""
        return self.dynamics(self._za(z, action, task))

    def reward_logits(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw reward-head output ``[..., num_bins]`` (two-hot) or ``[..., 1]`` (scalar)."""
        return self.reward_net(self._za(z, action, task))

    def reward(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        task: torch.Tensor | None = None,
        apply_symexp: bool = True,
    ) -> torch.Tensor:
        """Predicted reward ``[...]``, in the units the head was trained on.

        For a two-hot head ``apply_symexp=False`` gives the expectation in symlog
        space (the authors' ``almost_two_hot_inv``).
        """
        out = self.reward_logits(z, action, task)
        if self.config.reward_head == "twohot":
            return two_hot_inv(out, self.config.vmin, self.config.vmax, apply_symexp)
        return out.squeeze(-1)

    def termination_logit(self, z_next: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Logit of ``P(terminated)`` for arrival latents ``[..., L]`` -> ``[...]``.

        A model without a termination head returns a very negative constant.
        """
        if self.termination_net is None:
            return torch.full(z_next.shape[:-1], -30.0, device=z_next.device, dtype=z_next.dtype)
        z_next, task = self._resolve(z_next, task, z_next.shape[-1])
        return self.termination_net(self._with_task(z_next, task)).squeeze(-1)

    def continuation(self, z_next: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """``1 - P(terminated)`` for arrival latents ``[..., L]`` -> ``[...]``."""
        return torch.sigmoid(-self.termination_logit(z_next, task))
