"""Is a saved HalfCheetah agent running upright or on its back?

HalfCheetah has a well-known local optimum: the cheetah flips over early in
training and learns to scoot along on its back, which caps the return near
2,000-2,500 however long it trains. A return curve cannot tell that apart from
slow learning; the torso pitch can. For each agent this runs deterministic
episodes and reports the return, the mean forward velocity and the share of
steps with the torso pitched past 90 degrees (``|rooty| > pi / 2``; the
observation's second entry, since ``exclude_current_positions_from_observation``
drops the x position).

Usage::

    python benchmarks/posture.py runs/snapshots/pwm-seed2-*.zip
    python benchmarks/posture.py --algo sac sac-seed0.zip --out posture.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from evaluation import episode

_PITCH, _FORWARD_VELOCITY = 1, 8  # HalfCheetah-v5 observation entries: rooty, d(rootx)/dt


def posture(model: Any, env_id: str = "HalfCheetah-v5", episodes: int = 2, seed: int = 10_000) -> dict[str, float]:
    """Mean return, forward velocity and flipped share over ``episodes`` deterministic episodes."""
    env = gym.make(env_id)
    velocity: list[float] = []
    flipped: list[bool] = []

    def record(obs: np.ndarray) -> None:
        velocity.append(float(obs[_FORWARD_VELOCITY]))
        flipped.append(abs(float(obs[_PITCH])) > math.pi / 2)

    returns = [episode(model, env, seed + i, record) for i in range(episodes)]
    env.close()
    return {
        "return": float(np.mean(returns)),
        "forward_velocity": float(np.mean(velocity)),
        "flipped_share": float(np.mean(flipped)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agents", nargs="+", type=Path, help="saved agent zips")
    parser.add_argument("--algo", choices=["pwm", "sac"], default="pwm")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--out", type=Path, help="optional JSON file for the rows")
    args = parser.parse_args()

    import torch
    from stable_baselines3 import SAC

    from pwm_agent import PWM

    torch.set_num_threads(1)
    cls = PWM if args.algo == "pwm" else SAC
    rows = []
    for path in args.agents:
        row = {"agent": str(path), **posture(cls.load(path, device="cpu"), args.env, args.episodes)}
        rows.append(row)
        print(
            f"{path}: return {row['return']:.0f}, forward velocity {row['forward_velocity']:.2f}, "
            f"flipped {100 * row['flipped_share']:.0f}% of steps",
            flush=True,
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
