"""Environment adapters and wrappers, the MT80 task envs (dm_control and Meta-World) and the
differentiable tasks (registered with Gymnasium on import)."""

from pwm_agent.envs.diffsim import register_diffsim
from pwm_agent.envs.dmc import DMControlTaskEnv, register_mt30
from pwm_agent.envs.mw_tasks import MetaWorldTaskEnv, register_metaworld
from pwm_agent.envs.vector import GymnasiumVecEnv
from pwm_agent.envs.wrappers import VecFlattenObservation, flat_box, flatten_observation

register_mt30()
register_metaworld()

__all__ = [
    "DMControlTaskEnv",
    "GymnasiumVecEnv",
    "MetaWorldTaskEnv",
    "VecFlattenObservation",
    "flat_box",
    "flatten_observation",
    "register_diffsim",
    "register_metaworld",
    "register_mt30",
]
