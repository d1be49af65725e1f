"""Names of the built-in differentiable tasks and their Gymnasium registration."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from pwm_agent.envs.diffsim.ball import BouncingBall
from pwm_agent.envs.diffsim.base import DiffSimEnv
from pwm_agent.envs.diffsim.tasks import CartPoleSwingUp, DoublePendulum

__all__ = ["DIFFSIM_TASKS", "make_diffsim", "register_diffsim"]

DIFFSIM_TASKS: dict[str, type[DiffSimEnv]] = {
    "CartPoleSwingUp": CartPoleSwingUp,
    "DoublePendulum": DoublePendulum,
    "BouncingBall": BouncingBall,
}
_ALIASES = {"cartpole_swing_up": "CartPoleSwingUp", "cartpole": "CartPoleSwingUp", "double_pendulum": "DoublePendulum"}


def _task_name(name: str) -> str:
    base = name.removeprefix("pwm_agent/").split("-v")[0]
    base = _ALIASES.get(base.lower(), base)
    if base not in DIFFSIM_TASKS:
        raise ValueError(
            f"Unknown differentiable task {name!r}; built-in tasks: {sorted(DIFFSIM_TASKS)} "
            "(or pass your own dflex-style env object)."
        )
    return base


def make_diffsim(name: str, **kwargs: Any) -> DiffSimEnv:
    """Build a built-in differentiable env by name (``"CartPoleSwingUp"``,
    ``"pwm_agent/CartPoleSwingUp-v0"``, ``"cartpole_swing_up"``, ...).

    :param kwargs: constructor arguments (``num_envs``, ``device``, ``no_grad``, ...).
    """
    return DIFFSIM_TASKS[_task_name(name)](**kwargs)


def register_diffsim() -> None:
    """Register ``pwm_agent/<Task>-v0`` for every built-in differentiable task (idempotent)."""
    for name in DIFFSIM_TASKS:
        env_id = f"pwm_agent/{name}-v0"
        if env_id in gym.registry:
            continue
        gym.register(
            env_id,
            entry_point="pwm_agent.envs.diffsim.gym_envs:DiffSimGymEnv",
            vector_entry_point="pwm_agent.envs.diffsim.gym_envs:DiffSimVectorEnv",
            kwargs={"task": name},
            disable_env_checker=True,
        )
