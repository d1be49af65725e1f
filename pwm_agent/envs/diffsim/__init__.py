"""Differentiable simulators: built-in PyTorch tasks, ``newton``-backed contact tasks
(``NewtonAnt``, ``NewtonHopper``; the ``newton`` extra, imported from
``pwm_agent.envs.diffsim.newton_tasks`` or built by name), the dflex-style interface and
Gymnasium views."""

from pwm_agent.envs.diffsim.ball import BouncingBall
from pwm_agent.envs.diffsim.base import DiffSimEnv
from pwm_agent.envs.diffsim.gym_envs import DiffSimGymEnv, DiffSimVectorEnv
from pwm_agent.envs.diffsim.interface import check_differentiable_env, is_differentiable_env
from pwm_agent.envs.diffsim.registry import DIFFSIM_TASKS, NEWTON_TASKS, make_diffsim, register_diffsim
from pwm_agent.envs.diffsim.tasks import CartPoleSwingUp, DoublePendulum

register_diffsim()

__all__ = [
    "DIFFSIM_TASKS",
    "BouncingBall",
    "CartPoleSwingUp",
    "DiffSimEnv",
    "DiffSimGymEnv",
    "DiffSimVectorEnv",
    "DoublePendulum",
    "NEWTON_TASKS",
    "check_differentiable_env",
    "is_differentiable_env",
    "make_diffsim",
    "register_diffsim",
]
