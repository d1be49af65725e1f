"""Differentiable imagined rollouts through a frozen world model."""

from __future__ import annotations

from typing import NamedTuple

import torch

from pwm_agent.networks import Actor
from pwm_agent.world_model.model import WorldModel

__all__ = ["Imagination", "imagine"]


class Imagination(NamedTuple):
    """An imagined trajectory, time-major.

    ``latents [H + 1, B, L]``, ``actions [H, B, A]``, ``rewards [H, B]`` and
    ``continues [H, B]`` (``1 - P(terminated)`` after each step).
    """

    latents: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    continues: torch.Tensor


def imagine(
    world_model: WorldModel,
    actor: Actor,
    z0: torch.Tensor,
    horizon: int,
    task: torch.Tensor | None = None,
    apply_symexp: bool = True,
) -> Imagination:
    """Roll the actor through the model for ``horizon`` steps from ``z0 [B, L]``.

    The actor reads ``z_t.detach()``: its gradient reaches its parameters only
    through ``a_t -> model -> later rewards and values`` (the PWM estimator).
    """
    z = z0
    latents, actions, rewards, continues = [z0], [], [], []
    for _ in range(horizon):
        action = actor.sample(z.detach())
        rewards.append(world_model.reward(z, action, task, apply_symexp=apply_symexp))
        z = world_model.next(z, action, task)
        continues.append(world_model.continuation(z, task))
        latents.append(z)
        actions.append(action)
    return Imagination(torch.stack(latents), torch.stack(actions), torch.stack(rewards), torch.stack(continues))
