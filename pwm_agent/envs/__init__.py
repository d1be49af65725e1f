"""Environment adapters and wrappers, and the MT30 task envs (registered on import)."""

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
    "register_mt30",
]
