"""The default number of random-action steps before training (``learning_starts="auto"``).

TD-MPC2 collects ``max(1000, 5 × episode length)`` seed steps before its first update;
PWM follows the same rule: five episodes of random data give the world model a first
view of the whole task (on HalfCheetah-v5, 1,000 random steps let the first policies
learn to run on their back; see the benchmark docs). The episode length is the env's
time limit (``spec.max_episode_steps``); an env without one gets 1,000 steps.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.vec_env import VecEnv

MIN_RANDOM_STEPS = 1000
RANDOM_EPISODES = 5


def episode_limit(env: VecEnv) -> int | None:
    """The time limit of ``env``'s first sub-env (``spec.max_episode_steps``), or ``None``
    when it has none or does not say (an env built without ``gymnasium.make``)."""
    try:
        spec: Any = env.get_attr("spec", indices=[0])[0]
    except (AttributeError, NotImplementedError):
        return None
    limit = getattr(spec, "max_episode_steps", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def default_learning_starts(env: VecEnv | None, horizon: int) -> int:
    """``max(1000, 5 × episode length, horizon × n_envs)`` env steps (summed over envs);
    1,000 (or ``horizon × n_envs``) without an env or a time limit."""
    if env is None:
        return max(MIN_RANDOM_STEPS, horizon)
    limit = episode_limit(env) or 0
    return max(MIN_RANDOM_STEPS, RANDOM_EPISODES * limit, horizon * env.num_envs)
