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
    noise: torch.Tensor | None = None,
) -> Imagination:
    """Roll the actor through the model for ``horizon`` steps from ``z0 [B, L]``.

    The actor reads ``z_t.detach()``: its gradient reaches its parameters only
    through ``a_t -> model -> later rewards and values`` (the PWM estimator).
    ``noise [H, B, A]`` (standard normal) drives the actor's samples; ``None`` draws it.
    """
    z = z0
    latents, actions = [z0], []
    for t in range(horizon):
        action = actor.sample(z.detach(), None if noise is None else noise[t])
        z = world_model.next(z, action, task)
        latents.append(z)
        actions.append(action)
    zs, acts = torch.stack(latents), torch.stack(actions)  # [H + 1, B, L], [H, B, A]
    # Rewards and terminations need no sequential pass: one batched call each.
    rewards = world_model.reward(zs[:-1], acts, task, apply_symexp=apply_symexp)
    continues = world_model.continuation(zs[1:], task)
    return Imagination(zs, acts, rewards, continues)
