"""SHAC policy: observation normaliser, Gaussian actor, critic ensemble and its target copy."""

from __future__ import annotations

import copy
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from pwm_agent.common.running_stats import TorchRunningMeanStd
from pwm_agent.networks import Actor, CriticEnsemble

__all__ = ["MlpPolicy", "SHACPolicy"]


class SHACPolicy(BasePolicy):
    """The networks of a SHAC agent, with SB3's ``BasePolicy`` interface.

    Acting: ``a = tanh(mu(norm(obs)))`` (deterministic) or a reparameterised
    Gaussian sample before the squash, so gradients flow from the simulator's
    rewards through the action into the actor.

    :param observation_space: a flat ``Box`` observation space.
    :param action_space: a ``Box`` action space (dflex envs use ``[-1, 1]``).
    :param lr_schedule: unused (the algorithm owns the optimisers); kept for SB3.
    :param actor_arch: hidden widths of the actor (SHAC: ``[64, 64]`` for cartpole,
        ``[128, 64, 32]`` for locomotion).
    :param critic_arch: hidden widths of each critic.
    :param n_critics: critic ensemble size (members trained on the same targets;
        their minimum bootstraps the actor's return).
    :param activation: activation of actor and critics (SHAC: ``"elu"``).
    :param log_std_init: initial actor log-std.
    :param log_std_min: lower clamp of the actor log-std.
    :param normalize_observations: normalise observations by running statistics
        (SHAC's ``obs_rms``), updated during training.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule | None = None,
        actor_arch: list[int] | None = None,
        critic_arch: list[int] | None = None,
        n_critics: int = 3,
        activation: str = "elu",
        log_std_init: float = -1.0,
        log_std_min: float = -5.0,
        normalize_observations: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"SHAC needs a flat Box observation space, got {observation_space}.")
        obs_dim, act_dim = int(observation_space.shape[0]), int(action_space.shape[0])
        actor_arch = list(actor_arch) if actor_arch is not None else [128, 64, 32]
        critic_arch = list(critic_arch) if critic_arch is not None else [64, 64]
        self._kwargs = dict(
            actor_arch=actor_arch, critic_arch=critic_arch, n_critics=n_critics, activation=activation,
            log_std_init=log_std_init, log_std_min=log_std_min, normalize_observations=normalize_observations,
        )
        self.normalize_observations = normalize_observations
        self.obs_rms = TorchRunningMeanStd(shape=(obs_dim,))
        self.actor = Actor(obs_dim, act_dim, actor_arch, activation, log_std_init, log_std_min)
        self.critic = CriticEnsemble(obs_dim, critic_arch, n_critics, activation)
        self.target_critic = copy.deepcopy(self.critic)
        self.target_critic.requires_grad_(False)

    def constructor_kwargs(self) -> dict[str, Any]:
        """The network options as plain JSON-friendly values (rebuilds this policy)."""
        return dict(self._kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(observation_space=self.observation_space, action_space=self.action_space, **self._kwargs)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalised observations ``[..., O]`` (identity when normalisation is off)."""
        return self.obs_rms.normalize(obs) if self.normalize_observations else obs

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in ``[-1, 1]``: ``obs [B, O]`` -> ``[B, A]``."""
        return self._predict(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        obs = self.normalize(observation.float())  # type: ignore[union-attr]
        return self.actor(obs, deterministic=deterministic)

    @torch.no_grad()
    def soft_update_target(self, alpha: float) -> None:
        """``target <- alpha * target + (1 - alpha) * critic`` (SHAC's ``target_critic_alpha``)."""
        for target, online in zip(self.target_critic.parameters(), self.critic.parameters()):
            target.mul_(alpha).add_(online, alpha=1.0 - alpha)


MlpPolicy = SHACPolicy
