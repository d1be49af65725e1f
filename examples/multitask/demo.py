"""Multi-task demo: load the shipped world model, extract a policy for one task, evaluate.

    python examples/multitask/demo.py --task cartpole-swingup      # a few minutes on a CPU

The world model (``--checkpoint``: ``mt4-1M``, TD-MPC2's 1M shape on 4 MT30 tasks, by
default, or ``mt4-5M``, which needs a task's full training data for a good policy; both
trained by ``examples/multitask/train_checkpoint.py``) stays frozen; a new actor and critics are
trained through imagined rollouts from the start states of a few shipped episodes of
the task, then evaluated on ``pwm_agent/<task>`` (dm_control, needs the ``dmc`` extra)
beside a uniformly random policy. Scores are return / 1000.
"""

from __future__ import annotations

import argparse
import logging

import gymnasium as gym
import torch

from pwm_agent import PWM
from pwm_agent.checkpoints import SHIPPED, SHIPPED_NAMES, shipped_checkpoint, shipped_episodes

logger = logging.getLogger("multitask-demo")


def score(policy, env_id: str, episodes: int) -> float:
    """Mean return / 1000 over fixed start seeds."""
    env = gym.make(env_id)
    total = 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total, done = total + float(reward), terminated or truncated
    return total / episodes / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cartpole-swingup",
                        choices=["walker-stand", "cartpole-swingup", "reacher-easy", "cup-catch"])
    parser.add_argument("--checkpoint", default=SHIPPED, choices=SHIPPED_NAMES, help="shipped world model")
    parser.add_argument("--steps", type=int, default=2000, help="policy-extraction updates")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    agent = PWM.from_pretrained(shipped_checkpoint(args.checkpoint), task=args.task, seed=0)
    data = shipped_episodes(args.task, args.checkpoint)
    logger.info("extracting a %s policy from %s (%d start episodes)", args.task, shipped_checkpoint(args.checkpoint).name,
                data.num_episodes)
    agent.extract_policy(data, args.steps, progress_bar=True)
    env_id = f"pwm_agent/{args.task}"
    space = gym.make(env_id).action_space
    space.seed(0)
    pwm = score(lambda obs: agent.predict(obs, deterministic=True)[0], env_id, args.episodes)
    rand = score(lambda obs: space.sample(), env_id, args.episodes)
    logger.info("%s: extracted PWM policy %.3f, random policy %.3f (return / 1000, %d episodes)",
                args.task, pwm, rand, args.episodes)


if __name__ == "__main__":
    main()
