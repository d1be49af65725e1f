"""The evaluation every benchmark shares: deterministic actions from fixed start seeds."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np


def episode(model: Any, env: gym.Env, seed: int, on_step: Callable[[np.ndarray], None] | None = None) -> float:
    """Return of one episode of ``model.predict(obs, deterministic=True)`` from ``env.reset(seed=seed)``;
    ``on_step`` sees each next observation ``[O]``."""
    obs, _ = env.reset(seed=seed)
    done, total = False, 0.0
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + float(reward), terminated or truncated
        if on_step is not None:
            on_step(obs)
    return total


def evaluate(model: Any, env_id: str, episodes: int = 10, seed: int = 10_000) -> float:
    """Mean return of ``model.predict(obs, deterministic=True)`` over ``episodes`` episodes
    started from seeds ``seed, seed + 1, ...``."""
    env = gym.make(env_id)
    returns = [episode(model, env, seed + i) for i in range(episodes)]
    env.close()
    return float(np.mean(returns))
