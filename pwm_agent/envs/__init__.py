"""Environment adapters and wrappers."""

from pwm_agent.envs.vector import GymnasiumVecEnv
from pwm_agent.envs.wrappers import VecFlattenObservation, flat_box, flatten_observation

__all__ = ["GymnasiumVecEnv", "VecFlattenObservation", "flat_box", "flatten_observation"]
