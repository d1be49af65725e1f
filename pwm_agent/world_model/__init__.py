"""Differentiable TD-MPC2-style world model."""

from pwm_agent.world_model.config import PRESETS, WorldModelConfig, make_config
from pwm_agent.world_model.losses import WorldModelLossWeights, world_model_loss
from pwm_agent.world_model.model import WorldModel

__all__ = ["PRESETS", "WorldModel", "WorldModelConfig", "WorldModelLossWeights", "make_config", "world_model_loss"]
