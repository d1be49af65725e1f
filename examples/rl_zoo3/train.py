"""Train PWM with rl-zoo3's command line.

rl-zoo3 looks algorithms up in its ``ALGOS`` dict; registering PWM there makes
``--algo pwm`` available, with hyperparameters read from a YAML file::

    python examples/rl_zoo3/train.py --algo pwm --env Pendulum-v1 -conf examples/rl_zoo3/pwm.yml

Every other rl-zoo3 ``train`` option (``--eval-freq``, ``-n``, ``--seed``,
``-tb``, ``--save-freq``, ...) works as usual.
"""

import rl_zoo3
from rl_zoo3.train import train

from pwm_agent import PWM

rl_zoo3.ALGOS["pwm"] = PWM

if __name__ == "__main__":
    train()
