"""Returns of imagined trajectories: the actor objective and TD(lambda) targets."""

from __future__ import annotations

import torch

__all__ = ["discounted_return", "td_lambda_episodic", "td_lambda_targets"]


def discounted_return(
    rewards: torch.Tensor, continues: torch.Tensor, bootstrap: torch.Tensor, gamma: float
) -> torch.Tensor:
    """``sum_t gamma^t w_t r_t + gamma^H w_H V(z_H)`` with ``w_t = prod_{k<t} c_k``.

    :param rewards: ``[H, B]`` imagined rewards.
    :param continues: ``[H, B]`` continuation probabilities after each step.
    :param bootstrap: ``[B]`` value of the last latent.
    :return: ``[B]`` returns (differentiable in all inputs).
    """
    horizon = rewards.shape[0]
    # Running products by hand: cumprod's backward reads the input back to the host
    # (a zero check), which would stall the GPU and break CUDA graph capture.
    alive_t = [torch.ones_like(continues[0])]
    for t in range(horizon):
        alive_t.append(alive_t[-1] * continues[t])
    alive = torch.stack(alive_t)  # [H + 1, B]
    discount = gamma ** torch.arange(horizon + 1, device=rewards.device, dtype=rewards.dtype)
    weights = discount.unsqueeze(-1) * alive
    return (weights[:-1] * rewards).sum(0) + weights[-1] * bootstrap


def td_lambda_targets(
    rewards: torch.Tensor, continues: torch.Tensor, values: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(lambda) targets for ``z_0 .. z_{H-1}``.

    ``G_t = r_t + gamma c_t ((1 - lam) V(z_{t+1}) + lam G_{t+1})``, ``G_H = V(z_H)``;
    a terminated step (``c_t = 0``) bootstraps zero.

    :param rewards: ``[H, B]`` imagined rewards.
    :param continues: ``[H, B]`` continuation probabilities after each step.
    :param values: ``[H + 1, B]`` values of ``z_0 .. z_H``.
    :return: ``[H, B]`` targets (no gradient).
    """
    horizon = rewards.shape[0]
    targets = torch.empty_like(rewards)
    next_return = values[-1]
    for t in reversed(range(horizon)):
        blended = (1.0 - lam) * values[t + 1] + lam * next_return
        next_return = rewards[t] + gamma * continues[t] * blended
        targets[t] = next_return
    return targets.detach()


def td_lambda_episodic(
    rewards: torch.Tensor, next_values: torch.Tensor, ends: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(lambda) targets of a real trajectory whose envs reset inside it (SHAC's critic targets).

    ``G_t = r_t + gamma V'_t`` where the trajectory of that env ends at ``t``
    (episode end or last step), else ``G_t = r_t + gamma ((1 - lam) V'_t + lam G_{t+1})``.

    :param rewards: ``[T, N]`` rewards.
    :param next_values: ``[T, N]`` values of the state each step reached (before any
        reset), already zero where the episode terminated.
    :param ends: ``[T, N]`` 1 where the env's trajectory ends after step ``t`` (done, or ``t = T - 1``).
    :return: ``[T, N]`` targets (no gradient).
    """
    targets = torch.empty_like(rewards)
    following = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        blended = torch.where(ends[t] > 0, next_values[t], (1.0 - lam) * next_values[t] + lam * following)
        following = rewards[t] + gamma * blended
        targets[t] = following
    return targets.detach()
