"""Quickstart: train PWM on a Gymnasium task and compare it with a random policy.

Run ``python examples/quickstart.py`` (Pendulum-v1, 20,000 env steps: about
12-35 minutes on a 2-core CPU, depending on the CPU and its other jobs;
``--timesteps 5000`` for a first look). It
writes, under ``--output-dir``:

- ``pwm_<task>.zip``: the trained agent (reload it with ``PWM.load``);
- ``evaluations.npz``: the returns recorded by ``EvalCallback`` during training;
- ``learning_curve.png``: evaluation return against env steps, with the random
  policy's return drawn as a horizontal line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")  # write files only, no display needed
import matplotlib.pyplot as plt
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from pwm_agent import PWM

console = Console()


class RandomPolicy:
    """Uniformly random actions, with the ``predict`` signature ``evaluate_policy`` expects."""

    def __init__(self, action_space: gym.spaces.Box, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        n_envs = observation.shape[0]
        return np.stack([self.action_space.sample() for _ in range(n_envs)]), None


def make_env(env_id: str, seed: int) -> VecEnv:
    """One Monitor-wrapped env; two envs made with the same seed replay the same start states."""
    return make_vec_env(env_id, n_envs=1, seed=seed)


def evaluate(policy: PWM | RandomPolicy, env_id: str, seed: int, episodes: int) -> tuple[float, float]:
    """Mean and std of the return over ``episodes`` episodes on a freshly seeded env."""
    env = make_env(env_id, seed)
    mean, std = evaluate_policy(policy, env, n_eval_episodes=episodes, deterministic=True)  # type: ignore[arg-type]
    env.close()
    return float(mean), float(std)


def plot_learning_curve(callback: EvalCallback, random_return: float, env_id: str, path: Path) -> None:
    """Evaluation return (mean +- std over episodes) against env steps."""
    steps = np.asarray(callback.evaluations_timesteps)
    returns = np.asarray(callback.evaluations_results)  # [n_evaluations, n_episodes]
    mean, std = returns.mean(axis=1), returns.std(axis=1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(steps, mean, marker="o", label=f"PWM, mean ± std of {returns.shape[1]} episodes")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.axhline(random_return, color="grey", linestyle="--", label="random policy (mean)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(f"PWM on {env_id}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium env id with a continuous action space")
    parser.add_argument("--timesteps", type=int, default=20_000, help="env steps of training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/quickstart"))
    parser.add_argument("--eval-freq", type=int, default=2_000, help="env steps between two evaluations")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (the default networks are small: one thread is as fast, and far "
        "faster when other work shares the cores; 0 keeps torch's default)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    task = args.env.split("/")[-1].split("-v")[0].lower()
    model_path = args.output_dir / f"pwm_{task}.zip"

    # Train, evaluating every --eval-freq steps on a separate env.
    eval_callback = EvalCallback(
        make_env(args.env, args.seed + 1000),
        n_eval_episodes=5,
        eval_freq=args.eval_freq,
        log_path=str(args.output_dir),
        deterministic=True,
        verbose=0,
    )
    agent = PWM("MlpPolicy", args.env, seed=args.seed, device=args.device)
    agent.learn(total_timesteps=args.timesteps, callback=eval_callback, progress_bar=True)
    agent.save(model_path)  # save before anything else can fail
    console.print(f"Saved the agent to [bold]{model_path}[/]")

    # Final comparison on identical start states: the reloaded agent vs random actions.
    agent = PWM.load(model_path, device=args.device)
    episodes = 10
    pwm_mean, pwm_std = evaluate(agent, args.env, args.seed, episodes)
    rand_mean, rand_std = evaluate(RandomPolicy(agent.action_space, args.seed), args.env, args.seed, episodes)

    table = Table(title=f"{args.env}: return over {episodes} episodes after {args.timesteps} steps")
    table.add_column("policy")
    table.add_column("mean return", justify="right")
    table.add_column("std", justify="right")
    table.add_row("PWM (deterministic)", f"{pwm_mean:.1f}", f"{pwm_std:.1f}")
    table.add_row("random", f"{rand_mean:.1f}", f"{rand_std:.1f}")
    console.print(table)

    if eval_callback.evaluations_timesteps:
        curve_path = args.output_dir / "learning_curve.png"
        plot_learning_curve(eval_callback, rand_mean, args.env, curve_path)
        console.print(f"Learning curve: [bold]{curve_path}[/]")


if __name__ == "__main__":
    main()
