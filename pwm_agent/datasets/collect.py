"""Collect episodes from any policy on a Gymnasium env into an :class:`OfflineDataset`."""

from __future__ import annotations

from typing import Any, Callable, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tqdm.auto import tqdm

from pwm_agent.datasets.dataset import OfflineDataset
from pwm_agent.envs.wrappers import flat_box, flatten_observation

__all__ = ["collect"]

PolicyLike = Union[str, Callable[[np.ndarray], np.ndarray], Any]


def _action_fn(policy: PolicyLike, env: gym.Env, deterministic: bool) -> Callable[[Any], np.ndarray]:
    """Turn ``"random"``, an SB3-style model (``predict``) or a callable into ``obs -> action``."""
    if isinstance(policy, str):
        if policy != "random":
            raise ValueError(f"policy must be 'random', an SB3 model or a callable, got {policy!r}.")
        return lambda obs: env.action_space.sample()
    if hasattr(policy, "predict"):
        return lambda obs: policy.predict(obs, deterministic=deterministic)[0]
    if callable(policy):
        return policy
    raise TypeError(f"policy must be 'random', an object with predict() or a callable, got {type(policy).__name__}.")


def collect(
    env: str | gym.Env,
    policy: PolicyLike = "random",
    n_steps: int = 10_000,
    seed: int | None = None,
    deterministic: bool = False,
    progress_bar: bool = False,
) -> OfflineDataset:
    """Run ``policy`` on ``env`` for ``n_steps`` transitions and return the episodes.

    :param env: an env id or a single ``gymnasium.Env`` (``Box`` actions; ``Box`` or
        ``Dict``-of-``Box`` observations, stored flattened).
    :param policy: ``"random"`` (uniform actions), any object with SB3's
        ``predict(obs, deterministic)`` (an SB3 model, a PWM agent) or a callable
        ``obs -> action`` in the env's action space.
    :param n_steps: transitions to collect; the last episode is cut there and
        marked truncated.
    :param seed: seeds the first reset and the action space's sampler.
    :param deterministic: passed to ``predict``.
    :param progress_bar: show a tqdm bar over steps.

    Actions outside the space's bounds are clipped to them, so the stored action is the
    one the env receives; an action of the wrong size or with NaN/inf raises at once.

    Combine datasets of several policies with :func:`pwm_agent.datasets.concatenate`
    and write them with :func:`pwm_agent.datasets.save_minari`.
    """
    env = gym.make(env) if isinstance(env, str) else env
    if not isinstance(env.action_space, spaces.Box):
        raise ValueError(f"collect needs a Box action space, got {env.action_space}.")
    obs_space = env.observation_space
    flat = (lambda o: flatten_observation(obs_space, o, batched=False)) if isinstance(obs_space, spaces.Dict) else np.asarray
    act = _action_fn(policy, env, deterministic)
    env.action_space.seed(seed)
    episodes: list[dict[str, Any]] = []
    obs, _ = env.reset(seed=seed)
    current: dict[str, list[Any]] = _new_episode(flat(obs))
    for step in tqdm(range(n_steps), disable=not progress_bar, desc="collect", unit="step"):
        action = _checked_action(act(obs), env.action_space, step)
        obs, reward, terminated, truncated, _ = env.step(action)
        last = step == n_steps - 1
        _append(current, flat(obs), action, float(reward), terminated, truncated or (last and not terminated))
        if terminated or truncated or last:
            episodes.append({k: np.asarray(v) for k, v in current.items()})
            if not last:
                obs, _ = env.reset()
                current = _new_episode(flat(obs))
    flat_space = flat_box(obs_space) if isinstance(obs_space, spaces.Dict) else obs_space
    name = getattr(env.spec, "id", type(env).__name__)
    return OfflineDataset.from_episodes(episodes, flat_space, env.action_space, source=f"collect({name})")


def _checked_action(raw: Any, space: spaces.Box, step: int) -> np.ndarray:
    """The policy's action as the env's ``[A]`` float32 array, clipped to the bounds."""
    action = np.asarray(raw, dtype=np.float32)
    if action.size != int(np.prod(space.shape)):
        raise ValueError(
            f"The policy returned an action of shape {action.shape} at step {step}; the env's action space is "
            f"{space}. Return one action per call, in that space."
        )
    action = action.reshape(space.shape)
    if not np.isfinite(action).all():
        raise ValueError(f"The policy returned a NaN/inf action at step {step}: {action}.")
    return np.clip(action, space.low, space.high).astype(np.float32)


def _new_episode(obs: np.ndarray) -> dict[str, list[Any]]:
    return {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}


def _append(ep: dict[str, list[Any]], obs: np.ndarray, action: np.ndarray, reward: float, term: bool, trunc: bool) -> None:
    ep["observations"].append(obs)
    ep["actions"].append(action)
    ep["rewards"].append(reward)
    ep["terminations"].append(bool(term))
    ep["truncations"].append(bool(trunc))
