"""Offline workflow end to end: collect a mixed-quality dataset, pre-train a world model,
extract a policy without touching the env, evaluate it.

    python examples/offline.py                          # HalfCheetah-v5, ~15 min on a 2-core CPU
    python examples/offline.py --env Pendulum-v1 --scale 0.5

Steps:

1. Train SB3 SAC briefly and collect with it (stochastic actions) plus uniform random
   actions: a dataset of mixed quality, written as a Minari dataset (HDF5).
2. Read the dataset back (as a user with only the files would) and pre-train a PWM
   world model on it, with a held-out validation loss.
3. Extract a policy from the frozen world model using dataset start states only.
4. Evaluate it beside the dataset's mean episode return.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from pwm_agent import PWM, datasets

logger = logging.getLogger("offline-example")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5", help="Gymnasium env id (Box actions)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step count (0.1: a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="dataset/agent folder (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on small CPUs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    steps = {k: max(int(v * args.scale), 1) for k, v in
             dict(sac=5_000, random=10_000, policy=20_000, pretrain=10_000, extract=5_000).items()}
    out = args.out or Path(tempfile.mkdtemp(prefix="pwm-offline-"))

    logger.info("1/4 collecting: SAC trained for %d steps + uniform random actions", steps["sac"])
    sac = SAC("MlpPolicy", args.env, seed=0).learn(steps["sac"], progress_bar=True)
    mixed = datasets.concatenate([
        datasets.collect(args.env, "random", steps["random"], seed=0, progress_bar=True),
        datasets.collect(args.env, sac, steps["policy"], seed=1, progress_bar=True),
    ])
    path = datasets.save_minari(mixed, out / f"{args.env.lower()}-mixed-v0", env=args.env, algorithm_name="SAC+random")

    data = datasets.load(path)
    logger.info("2/4 pre-training on %s: %d episodes, %d transitions", path, data.num_episodes, data.num_transitions)
    agent = PWM("MlpPolicy", None, observation_space=data.observation_space, action_space=data.action_space,
                seed=0, verbose=0)
    val = agent.pretrain_world_model(data, steps["pretrain"], progress_bar=True)
    logger.info("held-out world-model loss %.4f", val["loss"])

    logger.info("3/4 extracting a policy from the frozen world model (no env steps)")
    agent.extract_policy(data, steps["extract"], progress_bar=True)
    agent.save(out / "pwm_offline")

    logger.info("4/4 evaluating")
    env = Monitor(gym.make(args.env))
    env.reset(seed=100)
    score, std = evaluate_policy(agent, env, n_eval_episodes=10, deterministic=True)
    returns = data.episode_returns()
    logger.info("dataset mean episode return %.1f (best episode %.1f)", returns.mean(), returns.max())
    logger.info("extracted PWM policy:         %.1f +/- %.1f   (agent saved to %s.zip)",
                score, std, out / "pwm_offline")


if __name__ == "__main__":
    main()
