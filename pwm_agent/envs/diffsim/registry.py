"""Names of the built-in differentiable tasks and their Gymnasium registration."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from pwm_agent.envs.diffsim.ball import BouncingBall
from pwm_agent.envs.diffsim.base import DiffSimEnv
from pwm_agent.envs.diffsim.tasks import CartPoleSwingUp, DoublePendulum

__all__ = ["DIFFSIM_TASKS", "NEWTON_TASKS", "make_diffsim", "register_diffsim", "task_class"]

DIFFSIM_TASKS: dict[str, type[DiffSimEnv]] = {
    "CartPoleSwingUp": CartPoleSwingUp,
    "DoublePendulum": DoublePendulum,
    "BouncingBall": BouncingBall,
}
#: Tasks backed by ``newton`` (the ``newton`` extra), imported only when built.
NEWTON_TASKS: dict[str, str] = {
    "NewtonAnt": "pwm_agent.envs.diffsim.newton_tasks:NewtonAnt",
    "NewtonHopper": "pwm_agent.envs.diffsim.newton_tasks:NewtonHopper",
}
_ALIASES = {
    "cartpole_swing_up": "CartPoleSwingUp", "cartpole": "CartPoleSwingUp", "double_pendulum": "DoublePendulum",
    "ant": "NewtonAnt", "hopper": "NewtonHopper",
}


def _task_name(name: str) -> str:
    base = name.removeprefix("pwm_agent/").split("-v")[0]
    base = _ALIASES.get(base.lower(), base)
    if base not in DIFFSIM_TASKS and base not in NEWTON_TASKS:
        raise ValueError(
            f"Unknown differentiable task {name!r}; built-in tasks: {sorted([*DIFFSIM_TASKS, *NEWTON_TASKS])} "
            "(or pass your own dflex-style env object)."
        )
    return base


def task_class(name: str) -> type:
    """The env class of a task name (importing the ``newton`` backend only when needed)."""
    base = _task_name(name)
    if base in DIFFSIM_TASKS:
        return DIFFSIM_TASKS[base]
    module, attr = NEWTON_TASKS[base].split(":")
    return getattr(importlib.import_module(module), attr)


def make_diffsim(name: str, **kwargs: Any) -> DiffSimEnv:
    """Build a built-in differentiable env by name (``"CartPoleSwingUp"``,
    ``"pwm_agent/CartPoleSwingUp-v0"``, ``"cartpole_swing_up"``, ``"NewtonAnt"``, ...).

    :param kwargs: constructor arguments (``num_envs``, ``device``, ``no_grad``, ...).
    """
    return task_class(name)(**kwargs)


def register_diffsim() -> None:
    """Register ``pwm_agent/<Task>-v0`` for every built-in differentiable task (idempotent;
    builds nothing, so the ``newton`` tasks are registered without newton installed)."""
    for name in [*DIFFSIM_TASKS, *NEWTON_TASKS]:
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
