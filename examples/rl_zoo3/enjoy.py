"""Replay a PWM agent trained with rl-zoo3.

    python examples/rl_zoo3/enjoy.py --algo pwm --env Pendulum-v1 -f logs -n 1000
"""

import rl_zoo3
from rl_zoo3.enjoy import enjoy

from pwm_agent import PWM

rl_zoo3.ALGOS["pwm"] = PWM

if __name__ == "__main__":
    enjoy()
