"""Learning-rate schedules: which ones PWM and SHAC decay themselves."""

from __future__ import annotations

from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

__all__ = ["constant_value", "decaying_schedule"]


def constant_value(learning_rate: float | Schedule) -> float | None:
    """The value of a float or of SB3's ``ConstantSchedule`` (what rl-zoo3 makes of a
    number in its YAML); ``None`` for any other schedule."""
    if isinstance(learning_rate, FloatSchedule):
        learning_rate = learning_rate.value_schedule
    if isinstance(learning_rate, ConstantSchedule):
        return float(learning_rate.val)
    return None if callable(learning_rate) else float(learning_rate)


def decaying_schedule(learning_rate: float | Schedule, final: float | None) -> LinearSchedule | None:
    """Linear decay from a constant ``learning_rate`` to ``final`` over SB3's progress;
    ``None`` (use SB3's schedule as it is) for ``final=None`` or a non-constant schedule."""
    start = constant_value(learning_rate)
    if start is None or final is None:
        return None
    return LinearSchedule(start, float(final), 1.0)
