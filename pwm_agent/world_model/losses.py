"""World-model training loss on ``H + 1``-step windows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pwm_agent.world_model.math import soft_ce
from pwm_agent.world_model.model import WorldModel

__all__ = ["WorldModelLossWeights", "world_model_loss"]


@dataclass(frozen=True)
class WorldModelLossWeights:
    """Coefficients of the world-model loss terms and the horizon discount ``rho``."""

    consistency: float = 20.0
    reward: float = 0.1
    termination: float = 1.0
    rho: float = 0.99


def world_model_loss(
    model: WorldModel,
    obs: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    task: torch.Tensor | None = None,
    weights: WorldModelLossWeights = WorldModelLossWeights(),
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Multi-step latent consistency + reward (+ termination) loss.

    :param obs: ``[H + 1, B, O]`` observations of each window.
    :param actions: ``[H, B, A]`` actions taken.
    :param rewards: ``[H, B]`` reward targets (already scaled for a scalar head).
    :param terminated: ``[H, B]`` 1.0 where step ``t`` ended the episode by termination.
    :param task: ``[B]`` task ids or ``None``.
    :param mask: ``[H, B]`` 1.0 for the steps to train on, 0.0 for steps past an episode's
        end (``None``: all); a step's loss is summed over the batch and divided by ``B``.
    :return: the total loss (scalar) and its detached parts by name.
    """
    horizon = actions.shape[0]
    if obs.shape[0] != horizon + 1 or rewards.shape[0] != horizon:
        raise ValueError(
            f"Expected obs [H+1, B, O], actions [H, B, A], rewards [H, B]; "
            f"got {tuple(obs.shape)}, {tuple(actions.shape)}, {tuple(rewards.shape)}."
        )
    with torch.no_grad():
        targets = model.encode(obs[1:], task)  # [H, B, L]
    z = model.encode(obs[0], task)
    latents = [z]
    for t in range(horizon):
        z = model.next(z, actions[t], task)
        latents.append(z)
    zs = torch.stack(latents)  # [H + 1, B, L]
    discount = weights.rho ** torch.arange(horizon, device=obs.device, dtype=obs.dtype)  # [H]

    def batch_mean(loss: torch.Tensor) -> torch.Tensor:  # [H, B] -> [H]
        return loss.mean(dim=1) if mask is None else (loss * mask).mean(dim=1)

    consistency = batch_mean(((zs[1:] - targets) ** 2).mean(dim=2))  # [H]
    logits = model.reward_logits(zs[:-1], actions, task)  # [H, B, K]
    if model.config.reward_head == "twohot":
        c = model.config
        reward = batch_mean(soft_ce(logits, rewards, c.num_bins, c.vmin, c.vmax))
    else:
        reward = batch_mean((logits.squeeze(-1) - rewards) ** 2)
    parts = {
        "consistency_loss": (discount * consistency).sum() / horizon,
        "reward_loss": (discount * reward).sum() / horizon,
    }
    total = weights.consistency * parts["consistency_loss"] + weights.reward * parts["reward_loss"]
    if model.termination_net is not None:
        term_logit = model.termination_logit(zs[1:], task)  # [H, B]
        term = batch_mean(F.binary_cross_entropy_with_logits(term_logit, terminated, reduction="none"))
        parts["termination_loss"] = (discount * term).sum() / horizon
        total = total + weights.termination * parts["termination_loss"]
    return total, {k: v.detach() for k, v in parts.items()}
