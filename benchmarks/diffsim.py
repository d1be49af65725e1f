"""PWM vs SHAC vs SAC vs PPO on a differentiable task, on exactly the same dynamics.

SHAC back-propagates through the simulator (``pwm_agent.envs.diffsim``); PWM,
SAC and PPO see the same simulator through its Gymnasium view (no gradients).
Each algorithm trains in its own process (one torch thread) for a wall-clock
budget; every ``--eval-every-s`` seconds of training its deterministic policy
is evaluated on 16 fixed start states (evaluation time is not counted).
Results: a JSON file, a Markdown table and a PNG of return vs env steps and vs
wall-clock.

Usage::

    python benchmarks/diffsim.py --task CartPoleSwingUp --budget-s 900 --workers 2
    python benchmarks/diffsim.py --task NewtonHopper --budget-s 3600 --workers 1 \
        --kwargs '{"shac": {"device": "cuda"}, "pwm": {"device": "cuda"}}'
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np

EVAL_ENVS = 16
EVAL_SEED = 10_000
POLE_TASKS = ("CartPoleSwingUp", "DoublePendulum")


def evaluate(model: Any, task: str) -> tuple[float, float]:
    """Deterministic actions over ``EVAL_ENVS`` episodes from seeded start states:
    ``(mean return, fraction of the second half of the episodes spent upright)`` (NaN
    for tasks without poles),
    upright meaning the norm of the pole angles (from ``primal``) below 0.2 rad (about 11 degrees)."""
    import torch

    from pwm_agent.envs.diffsim import make_diffsim

    env = make_diffsim(task, num_envs=EVAL_ENVS, seed=EVAL_SEED, no_grad=True)
    obs, total, upright = env.reset(), torch.zeros(EVAL_ENVS), torch.zeros(EVAL_ENVS)
    half = env.episode_length // 2
    for t in range(env.episode_length):
        action, _ = model.predict(obs.numpy(), deterministic=True)
        obs, reward, _, extras = env.step(torch.as_tensor(action, dtype=torch.float32))
        total += reward
        if t >= half and task in POLE_TASKS:
            upright += (-extras["primal"] < 0.2**2).float()
    fraction = float(upright.mean() / (env.episode_length - half)) if task in POLE_TASKS else float("nan")
    return float(total.mean()), fraction


def make_model(algo: str, task: str, seed: int, kwargs: dict | None = None) -> Any:
    import gymnasium as gym
    from stable_baselines3 import PPO, SAC

    from pwm_agent import PWM
    from pwm_agent.envs import GymnasiumVecEnv
    from pwm_agent.shac import SHAC

    env_id, kwargs = f"pwm_agent/{task}-v0", kwargs or {}
    if algo == "shac":
        return SHAC("MlpPolicy", task, seed=seed, **kwargs)
    if algo == "pwm":
        return PWM("MlpPolicy", env_id, seed=seed, **kwargs)
    if algo == "sac":
        return SAC("MlpPolicy", env_id, seed=seed, **kwargs)
    venv = GymnasiumVecEnv(gym.make_vec(env_id, num_envs=32, vectorization_mode="vector_entry_point"))
    return PPO("MlpPolicy", venv, **{"n_steps": 128, "batch_size": 512, "seed": seed, **kwargs})


def run(algo: str, task: str, seed: int, budget_s: float, eval_every_s: float, log: str, kwargs: dict) -> dict:
    """Train one agent for ``budget_s`` seconds of training; return its curve
    ``[(env steps, training seconds, eval return), ...]`` (also appended to ``log``)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    model = make_model(algo, task, seed, kwargs.get(algo))

    class Curve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float, float]] = []
            self.eval_seconds = 0.0
            self.start = time.perf_counter()
            self.next_eval = 0.0

        def train_seconds(self) -> float:
            return time.perf_counter() - self.start - self.eval_seconds

        def record(self) -> None:
            now = time.perf_counter()
            point = (int(self.num_timesteps), round(self.train_seconds(), 2), *evaluate(self.model, task))
            self.points.append(point)
            with open(log, "a") as handle:
                handle.write(json.dumps({"algo": algo, "seed": seed, "point": point}) + "\n")
            self.eval_seconds += time.perf_counter() - now

        def _on_step(self) -> bool:
            elapsed = self.train_seconds()
            if elapsed >= self.next_eval:
                self.record()
                self.next_eval += eval_every_s
            return elapsed < budget_s

    curve = Curve()
    model.learn(10**9, callback=curve)
    curve.record()
    return {"algo": algo, "seed": seed, "task": task, "curve": curve.points}


def _run_star(args: tuple) -> dict:
    return run(*args)


def write_report(results: list[dict], out: Path, task: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = ["| algorithm | seed | env steps | training time (s) | final return | best return | final upright |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        pts = np.array(r["curve"])
        upright = f"{pts[-1, 3]:.2f}" if pts.shape[1] > 3 else "-"
        lines.append(f"| {r['algo']} | {r['seed']} | {int(pts[-1, 0])} | {pts[-1, 1]:.0f} | {pts[-1, 2]:.1f} | "
                     f"{pts[:, 2].max():.1f} | {upright} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        pts = np.array(r["curve"])
        label = f"{r['algo']} seed {r['seed']}"
        axes[0].plot(pts[:, 0], pts[:, 2], label=label)
        axes[1].plot(pts[:, 1], pts[:, 2], label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("env steps (log scale)")
    axes[1].set_xlabel("training wall-clock (s, one CPU thread each)")
    returns = np.concatenate([np.array(r["curve"])[1:, 2] for r in results if len(r["curve"]) > 1])
    low, high = (float(np.percentile(returns, 5)), float(returns.max())) if len(returns) else (0.0, 0.0)
    if high > low:  # the untrained first points would dwarf the rest
        for ax in axes:
            ax.set_ylim(low, high + 0.05 * (high - low))
    for ax in axes:
        ax.set_ylabel(f"eval return ({EVAL_ENVS} episodes)")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="CartPoleSwingUp",
                        choices=[*POLE_TASKS, "NewtonHopper", "NewtonAnt"],
                        help="the Newton tasks need the newton extra (and a GPU to train at scale)")
    parser.add_argument("--algos", nargs="+", default=["shac", "pwm", "sac", "ppo"],
                        choices=["shac", "pwm", "sac", "ppo"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget-s", type=float, default=900.0, help="training seconds per run")
    parser.add_argument("--eval-every-s", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kwargs", type=json.loads, default={},
                        help='JSON of constructor overrides per algorithm, e.g. \'{"pwm": {"horizon": 16}}\'')
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/diffsim"))
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the JSON-lines log")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "points.jsonl"
    if args.report_only:
        runs: dict[tuple[str, int], list] = {}
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            runs.setdefault((entry["algo"], entry["seed"]), []).append(entry["point"])
        results = [{"algo": a, "seed": s, "task": args.task, "curve": c} for (a, s), c in runs.items()]
    else:
        log.unlink(missing_ok=True)
        jobs = [(a, args.task, s, args.budget_s, args.eval_every_s, str(log), args.kwargs)
                for a in args.algos for s in args.seeds]
        with mp.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(_run_star, jobs, chunksize=1)
    write_report(results, args.out, args.task)


if __name__ == "__main__":
    main()
