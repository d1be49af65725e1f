"""pwm_agent: PWM (Policy learning with multi-task World Models) for Stable-Baselines3 and Gymnasium."""

from pwm_agent.checkpoints import load_checkpoint, load_world_model
from pwm_agent.pwm import PWM, MlpPolicy, MultiInputPolicy, PWMPolicy
from pwm_agent.shac import SHAC
from pwm_agent.world_model import PRESETS, WorldModel, WorldModelConfig

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "PWM",
    "MlpPolicy",
    "MultiInputPolicy",
    "PWMPolicy",
    "SHAC",
    "WorldModel",
    "WorldModelConfig",
    "__version__",
    "load_checkpoint",
    "load_world_model",
]
