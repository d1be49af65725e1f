"""Environment adapters and wrappers, the MT30 task envs and the differentiable tasks
(registered with Gymnasium on import)."""

from pwm_agent.envs.diffsim import register_diffsim
from pwm_agent.envs.dmc import DMControlTaskEnv, register_mt30
from pwm_agent.envs.vector import GymnasiumVecEnv
from pwm_agent.envs.wrappers import VecFlattenObservation, flat_box, flatten_observation

register_mt30()

__all__ = [
    "DMControlTaskEnv",
    "GymnasiumVecEnv",
    "VecFlattenObservation",
    "flat_box",
    "flatten_observation",
    "register_diffsim",
    "register_mt30",
]
