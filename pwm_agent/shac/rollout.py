"""SHAC's short-horizon differentiable rollout through a simulator, and its critic update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from pwm_agent.envs.diffsim.interface import REQUIRED_EXTRAS
from pwm_agent.objectives import td_lambda_episodic
from pwm_agent.shac.policies import SHACPolicy

__all__ = ["Trajectory", "critic_targets", "differentiable_rollout", "train_critic"]


@dataclass
class Trajectory:
    """What one rollout leaves for the critic and the logs (all detached, time-major).

    ``obs [T, N, O]`` normalised observations acted on; ``rewards [T, N]``;
    ``next_obs [T, N, O]`` normalised observations each step reached (before resets);
    ``terminated [T, N]``; ``ends [T, N]`` (episode end or last step); ``done [T, N]``
    (episode end); ``episode_returns`` / ``episode_lengths [T, N]`` of the episode
    that ended at ``t`` (valid where ``done``).
    """

    obs: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    ends: torch.Tensor
    done: torch.Tensor
    episode_returns: torch.Tensor
    episode_lengths: torch.Tensor


def differentiable_rollout(
    env: Any,
    policy: SHACPolicy,
    horizon: int,
    gamma: float,
    running: tuple[torch.Tensor, torch.Tensor],
    on_step: Callable[[dict[str, torch.Tensor]], bool],
) -> tuple[torch.Tensor, Trajectory, tuple[torch.Tensor, torch.Tensor]] | None:
    """Roll the stochastic actor ``horizon`` steps through ``env`` keeping the graph.

    The objective is SHAC's: per env, the discounted reward sum of each piece of
    episode in the window plus ``gamma^k min_k V_target(s_end)`` at its end (zero
    after a termination), summed over pieces and divided by ``T * N``. A state that
    is not finite (or above 1e6 in magnitude, a diverging simulator) is treated as a
    termination, as SHAC does, so it never reaches the critics.

    :param running: ``(return, length)`` ``[N]`` of the envs' current episodes.
    :param on_step: called after every env step with that step's detached ``rewards``,
        ``dones``, ``episode_returns`` and ``episode_lengths`` ``[N]``; ``False`` aborts:
        the graph is cut and ``None`` returned.
    :return: ``(actor objective (scalar, to maximise), trajectory, running)``.
    """
    device = policy.device
    obs = env.reset(grads=True).to(device, torch.float32)
    n = obs.shape[0]
    disc = torch.ones(n, device=device)
    acc = torch.zeros(n, device=device)
    objective = torch.zeros((), device=device)
    ep_ret, ep_len = running
    record: dict[str, list[torch.Tensor]] = {k: [] for k in Trajectory.__dataclass_fields__}
    for t in range(horizon):
        if policy.normalize_observations:
            policy.obs_rms.update(obs)
        norm_obs = policy.normalize(obs)
        action = policy.actor.sample(norm_obs)
        next_obs, rew, done, extras = env.step(action.to(getattr(env, "device", device)))
        if t == 0:
            _check_extras(env, extras)
        rew = rew.to(device, torch.float32)
        done = done.to(device).bool()
        raw_reached = extras["obs_before_reset"].to(device, torch.float32)
        diverged = ~(torch.isfinite(raw_reached) & (raw_reached.abs() < 1e6)).all(-1)
        term = extras["termination"].to(device).bool() | diverged
        reached = policy.normalize(torch.where(diverged.unsqueeze(-1), torch.zeros_like(raw_reached), raw_reached))
        ends = done | (t == horizon - 1)
        acc = acc + disc * rew
        boot = gamma * policy.target_critic.min_value(reached) * (~term).float()
        objective = objective + torch.where(ends, acc + disc * boot, torch.zeros_like(acc)).sum()
        acc = torch.where(done, torch.zeros_like(acc), acc)
        disc = torch.where(done, torch.ones_like(disc), disc * gamma)
        ep_ret, ep_len = ep_ret + rew.detach(), ep_len + 1
        step = {
            "obs": norm_obs, "rewards": torch.nan_to_num(rew, 0.0, 0.0, 0.0), "next_obs": reached,
            "terminated": term.float(), "ends": ends.float(), "done": done, "episode_returns": ep_ret,
            "episode_lengths": ep_len,
        }
        for key, value in step.items():
            record[key].append(value.detach())
        ep_ret = torch.where(done, torch.zeros_like(ep_ret), ep_ret)
        ep_len = torch.where(done, torch.zeros_like(ep_len), ep_len)
        if not on_step({k: step[k].detach() for k in ("rewards", "done", "episode_returns", "episode_lengths")}):
            env.reset(grads=True)  # drop the graph of the abandoned rollout
            return None
        obs = next_obs.to(device, torch.float32)
    trajectory = Trajectory(**{k: torch.stack(v) for k, v in record.items()})
    return objective / (horizon * n), trajectory, (ep_ret, ep_len)


def _check_extras(env: Any, extras: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED_EXTRAS if key not in extras]
    if missing:
        raise KeyError(
            f"{type(env).__name__}.step returned extras without {missing}. SHAC needs the dflex interface of PWM's "
            f"DiffRL fork: extras with {list(REQUIRED_EXTRAS)} (older dflex envs return 'episode_end' instead; "
            "wrap them to add termination/truncation)."
        )


def critic_targets(policy: SHACPolicy, trajectory: Trajectory, gamma: float, lam: float) -> torch.Tensor:
    """TD(lambda) targets ``[T, N]`` from the target critic's values of the reached states."""
    with torch.no_grad():
        next_values = policy.target_critic.min_value(trajectory.next_obs) * (1.0 - trajectory.terminated)
    return td_lambda_episodic(trajectory.rewards, next_values, trajectory.ends, gamma, lam)


def train_critic(
    policy: SHACPolicy,
    optimizer: torch.optim.Optimizer,
    obs: torch.Tensor,
    targets: torch.Tensor,
    iterations: int,
    minibatches: int,
    max_grad_norm: float,
) -> torch.Tensor:
    """Regress every critic member on the targets: ``iterations`` shuffled passes of
    ``minibatches`` minibatches over ``obs [M, O]`` / ``targets [M]``. Returns the mean loss."""
    if obs.shape[0] < minibatches:
        raise ValueError(
            f"{obs.shape[0]} transitions cannot fill {minibatches} critic minibatches: use horizon * num_envs "
            "of at least critic_minibatches."
        )
    total = torch.zeros((), device=obs.device)
    size = obs.shape[0] // minibatches
    for _ in range(iterations):
        order = torch.randperm(obs.shape[0], device=obs.device)
        for start in range(0, size * minibatches, size):
            idx = order[start : start + size]
            loss = (policy.critic(obs[idx]) - targets[idx]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.critic.parameters(), max_grad_norm)
            optimizer.step()
            total = total + loss.detach()
    return total / (iterations * minibatches)
