"""How many random-action steps come before training when ``learning_starts="auto"``.

TD-MPC2 collects ``max(1000, 5 × episode length)`` seed steps before its first update:
five episodes of random data, at least 1,000 steps. ``"auto"`` keeps that intent on tasks
whose episodes end early too: the random phase ends once five episodes have ended and at
least 1,000 steps are stored, and at ``max(1000, 5 × time limit)`` steps at the latest.
On HalfCheetah-v5 (1,000-step episodes that never end early) that is 5,000 steps, where
1,000 let several seeds learn to run on their back (see the benchmark docs); on Hopper-v5,
whose random episodes last a few dozen steps, and on Pendulum-v1 it is 1,000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

MIN_RANDOM_STEPS = 1000
RANDOM_EPISODES = 5
TIME_LIMIT_ATTR = "_max_episode_steps"  # gymnasium.wrappers.TimeLimit's limit


def episode_limit(env: VecEnv) -> int | None:
    """The time limit of ``env``'s first sub-env (its ``TimeLimit`` wrapper's, which
    ``gymnasium.make`` adds from ``max_episode_steps``), or ``None`` without one. Only an
    int crosses a ``SubprocVecEnv``'s pipe (an env's spec may not pickle)."""
    try:
        if not env.has_attr(TIME_LIMIT_ATTR):
            return None
        limit: Any = env.get_attr(TIME_LIMIT_ATTR, indices=[0])[0]
    except (AttributeError, NotImplementedError):
        return None
    return int(limit) if isinstance(limit, (int, np.integer)) and limit > 0 else None


def learning_starts_bound(env: VecEnv, horizon: int) -> int:
    """The latest end of the random phase: ``max(1000, 5 × time limit, horizon × n_envs)``
    env steps, summed over envs (1,000 when the env has no time limit)."""
    limit = episode_limit(env) or 0
    return max(MIN_RANDOM_STEPS, RANDOM_EPISODES * limit, horizon * env.num_envs)


def random_phase_done(num_timesteps: int, episodes: int, horizon: int, n_envs: int) -> bool:
    """Five episodes have ended (over all envs) and at least ``max(1000, horizon × n_envs)``
    steps are stored: the random phase may end before :func:`learning_starts_bound`."""
    return episodes >= RANDOM_EPISODES and num_timesteps >= max(MIN_RANDOM_STEPS, horizon * n_envs)
