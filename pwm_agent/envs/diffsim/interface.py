"""Checks that an object honours the dflex-style differentiable env interface.

Any object works with SHAC if it has ``num_envs``, ``num_obs``, ``num_actions``
(or dflex's ``num_acts``), ``reset(env_ids=None, grads=False)`` and
``step(actions)`` returning torch ``(obs [N, O], rew [N], done [N], extras)``
with ``extras["obs_before_reset"]``, ``extras["termination"]`` and
``extras["truncation"]``: the built-in envs and dflex envs of PWM's DiffRL fork do.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import VectorEnv
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["REQUIRED_EXTRAS", "check_differentiable_env", "is_differentiable_env", "num_actions"]

REQUIRED_EXTRAS = ("obs_before_reset", "termination", "truncation")


def num_actions(env: Any) -> int:
    """The action size of a dflex-style env (``num_actions`` or dflex's ``num_acts``)."""
    return int(getattr(env, "num_actions", getattr(env, "num_acts", 0)))


def is_differentiable_env(env: Any) -> bool:
    """Whether ``env`` looks like a dflex-style batched torch env (not a Gymnasium/SB3 env)."""
    if isinstance(env, (gym.Env, VecEnv, VectorEnv, str)) or env is None:
        return False
    return all(hasattr(env, name) for name in ("step", "reset", "num_envs", "num_obs")) and num_actions(env) > 0


def check_differentiable_env(env: Any) -> None:
    """Raise a ``TypeError``/``ValueError`` that names the fix when ``env`` cannot be
    differentiated through."""
    if not is_differentiable_env(env):
        raise TypeError(
            f"Expected a differentiable env with num_envs, num_obs, num_actions, reset() and step() returning "
            f"torch tensors (a pwm_agent.envs.diffsim env or a dflex env), got {type(env).__name__}. Gymnasium "
            "and SB3 envs give no gradients: use PWM, SAC or PPO for them."
        )
    if getattr(env, "no_grad", False):
        raise ValueError(
            f"{type(env).__name__} was built with no_grad=True, so its steps record no gradients; "
            "construct it with no_grad=False."
        )
