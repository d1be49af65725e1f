"""Pure functions that define PWM's objectives: imagined rollouts and returns."""

from pwm_agent.objectives.rollout import Imagination, imagine
from pwm_agent.objectives.returns import discounted_return, td_lambda_episodic, td_lambda_targets

__all__ = ["Imagination", "discounted_return", "imagine", "td_lambda_episodic", "td_lambda_targets"]
