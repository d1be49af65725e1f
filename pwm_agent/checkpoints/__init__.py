"""Pretrained TD-MPC2 / PWM checkpoints: loading world models, policy priors and Q heads."""

from pwm_agent.checkpoints.heads import PolicyPrior, QEnsemble
from pwm_agent.checkpoints.shipped import SHIPPED, SHIPPED_NAMES, shipped_checkpoint, shipped_episodes
from pwm_agent.checkpoints.tdmpc2 import CheckpointError, TDMPC2Checkpoint, load_checkpoint, load_world_model, save_world_model

__all__ = ["SHIPPED", "SHIPPED_NAMES", "shipped_checkpoint", "shipped_episodes", "CheckpointError", "PolicyPrior", "QEnsemble", "TDMPC2Checkpoint", "load_checkpoint", "load_world_model", "save_world_model"]
