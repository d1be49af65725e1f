"""The PWM algorithm and its policies."""

from pwm_agent.pwm.callbacks import OfflineCheckpointCallback
from pwm_agent.pwm.policies import MlpPolicy, MultiInputPolicy, PWMPolicy
from pwm_agent.pwm.pwm import PWM

__all__ = ["PWM", "MlpPolicy", "MultiInputPolicy", "OfflineCheckpointCallback", "PWMPolicy"]
