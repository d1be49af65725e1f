"""The evaluation every benchmark shares: deterministic actions from fixed start seeds."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def evaluate(model: Any, env_id: str, episodes: int = 10, seed: int = 10_000) -> float:
    """Mean return of ``model.predict(obs, deterministic=True)`` over ``episodes`` episodes
    started from seeds ``seed, seed + 1, ...``."""
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))
