"""MPPI planning at evaluation time: world model + policy + critic, TD-MPC2 style.

The paper reports planning with PWM's models, but the authors' code never had it.
Each call refines a Gaussian over action sequences of ``horizon`` steps for every
observation: candidates are ``num_policy_samples`` rollouts of the stochastic actor
plus ``num_samples`` Gaussian sequences; each is scored by the world model's
discounted rewards (times predicted continuation) plus the discounted critic value of
the last latent; the mean and std are re-fitted to the ``num_elites`` best, weighted
by ``exp(temperature * (score - best))``. The first action of the final mean is
returned (or, when not deterministic, of an elite drawn by weight, plus noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pwm_agent.networks import Actor, CriticEnsemble
from pwm_agent.world_model import WorldModel

__all__ = ["MPPIConfig", "MPPIPlanner"]


@dataclass(frozen=True)
class MPPIConfig:
    """MPPI settings (TD-MPC2's defaults, with its 512 samples and 6 iterations)."""

    horizon: int = 3
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    num_policy_samples: int = 24
    min_std: float = 0.05
    max_std: float = 2.0
    temperature: float = 0.5

    def __post_init__(self) -> None:
        for name in ("horizon", "iterations", "num_samples", "num_elites"):
            if getattr(self, name) < 1:
                raise ValueError(f"MPPIConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.num_policy_samples < 0 or not 0 < self.min_std <= self.max_std or self.temperature <= 0:
            raise ValueError("MPPIConfig needs num_policy_samples >= 0, 0 < min_std <= max_std and temperature > 0.")


class MPPIPlanner:
    """Plans actions in ``[-1, 1]`` for a batch of observations ``[N, O]``.

    :param world_model: a single-task (or task-bound) world model.
    :param actor: the agent's actor (its samples seed the candidates).
    :param critic: the critic ensemble (the minimum over members bootstraps the plan).
    :param gamma: discount of the planned return.
    :param config: :class:`MPPIConfig`.
    """

    def __init__(
        self, world_model: WorldModel, actor: Actor, critic: CriticEnsemble, gamma: float, config: MPPIConfig
    ) -> None:
        if config.num_elites > config.num_samples + config.num_policy_samples:
            raise ValueError("num_elites must not exceed the number of candidates.")
        self.world_model, self.actor, self.critic, self.gamma, self.config = world_model, actor, critic, gamma, config

    def _score(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Planned returns ``[N, S]`` of action sequences ``[H, N, S, A]`` from latents ``[N, L]``."""
        horizon, n, s, _ = actions.shape
        z = z0.unsqueeze(1).expand(n, s, z0.shape[-1]).reshape(n * s, -1)
        total = torch.zeros(n * s, device=z0.device)
        alive = torch.ones(n * s, device=z0.device)
        for t in range(horizon):
            a = actions[t].reshape(n * s, -1)
            reward = self.world_model.reward(z, a)
            z = self.world_model.next(z, a)
            total = total + (self.gamma**t) * alive * reward
            alive = alive * self.world_model.continuation(z)
        total = total + (self.gamma**horizon) * alive * self.critic.min_value(z)
        return total.reshape(n, s)

    def _policy_sequences(self, z0: torch.Tensor) -> torch.Tensor:
        """``[H, N, P, A]`` action sequences of the stochastic actor rolled out in the model."""
        cfg, n = self.config, z0.shape[0]
        z = z0.unsqueeze(1).expand(n, cfg.num_policy_samples, z0.shape[-1]).reshape(-1, z0.shape[-1])
        out = []
        for _ in range(cfg.horizon):
            a = self.actor(z, deterministic=False)
            out.append(a.reshape(n, cfg.num_policy_samples, -1))
            z = self.world_model.next(z, a)
        return torch.stack(out)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions ``[N, A]`` in ``[-1, 1]`` for observations ``obs [N, O]``."""
        cfg = self.config
        z0 = self.world_model.encode(obs)
        n, a_dim = z0.shape[0], self.actor.log_std.shape[0]
        pi_seqs = self._policy_sequences(z0) if cfg.num_policy_samples > 0 else None
        mean = torch.zeros(cfg.horizon, n, 1, a_dim, device=z0.device)
        std = torch.full_like(mean, cfg.max_std)
        for _ in range(cfg.iterations):
            noise = torch.randn(cfg.horizon, n, cfg.num_samples, a_dim, device=z0.device)
            candidates = (mean + std * noise).clamp(-1.0, 1.0)
            if pi_seqs is not None:
                candidates = torch.cat([pi_seqs, candidates], dim=2)
            scores = self._score(z0, candidates)  # [N, S]
            elite_scores, idx = scores.topk(cfg.num_elites, dim=1)
            elites = torch.gather(candidates, 2, idx[None, :, :, None].expand(cfg.horizon, n, -1, a_dim))
            weights = torch.softmax(cfg.temperature * (elite_scores - elite_scores[:, :1]), dim=1)  # [N, E]
            w = weights[None, :, :, None]
            mean = (w * elites).sum(2, keepdim=True)
            std = ((w * (elites - mean) ** 2).sum(2, keepdim=True)).sqrt().clamp(cfg.min_std, cfg.max_std)
        if deterministic:
            return mean[0, :, 0]
        pick = torch.multinomial(weights, 1).squeeze(1)  # [N]
        first = elites[0, torch.arange(n, device=pick.device), pick]
        return (first + std[0, :, 0] * torch.randn_like(first)).clamp(-1.0, 1.0)
