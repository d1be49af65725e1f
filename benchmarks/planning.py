"""Planning benchmark: a PWM agent acting with its actor vs with MPPI planning.

Trains PWM online (defaults) for ``--steps`` env steps, then evaluates the same agent
both ways on the same fixed start states, reporting mean return and milliseconds per
action (one torch thread).

Usage::

    python benchmarks/planning.py --env Pendulum-v1 --steps 5000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pwm_agent import PWM
from pwm_agent.planning import MPPIConfig


def evaluate(agent: PWM, env_id: str, episodes: int, plan: Any) -> tuple[float, float]:
    """Mean return over fixed start seeds and mean seconds per action."""
    env = gym.make(env_id)
    returns, seconds, steps = [], 0.0, 0
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        done, total = False, 0.0
        while not done:
            t0 = time.perf_counter()
            action, _ = agent.predict(obs, deterministic=True, plan=plan)
            seconds, steps = seconds + time.perf_counter() - t0, steps + 1
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/planning.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent = PWM("MlpPolicy", args.env, seed=args.seed).learn(args.steps)
    rows = {}
    for name, plan in (("actor", False), ("mppi", MPPIConfig())):
        torch.manual_seed(0)
        score, per_step = evaluate(agent, args.env, args.episodes, plan)
        rows[name] = {"mean_return": score, "ms_per_action": 1000 * per_step}
        print(name, rows[name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": args.env, "train_steps": args.steps, **rows}, indent=1))


if __name__ == "__main__":
    main()
