"""SHAC, the ground-truth-gradient baseline of the PWM paper, with the SB3 API."""

from pwm_agent.shac.policies import MlpPolicy, SHACPolicy
from pwm_agent.shac.shac import SHAC

__all__ = ["SHAC", "MlpPolicy", "SHACPolicy"]
