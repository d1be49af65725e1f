"""Learning benchmark: PWM vs SB3 SAC on the same env, seeds and evaluation.

Each (algorithm, seed) run trains in its own process (one torch thread each;
runs go in parallel up to ``--workers``) and is evaluated every
``--eval-every`` env steps on 10 fixed start states with deterministic
actions. Results go to a JSON file, a Markdown table and a PNG of return vs
env steps and vs wall-clock; the final agents to ``<algo>-seed<k>.zip`` beside them,
and a snapshot at every evaluation to ``snapshots/<algo>-seed<k>-<steps>.zip`` (to
inspect when and how a run went wrong, e.g. a HalfCheetah that learned to run on
its back).

Usage::

    python benchmarks/learning.py --env Pendulum-v1 --steps 20000 --seeds 0 1
    python benchmarks/learning.py --env Hopper-v5 --steps 100000 --seeds 0 --eval-every 10000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from evaluation import evaluate


def run(
    algo: str, env_id: str, seed: int, steps: int, eval_every: int, episodes: int, kwargs: dict, log: str
) -> dict:
    """Train one agent; return its evaluation curve (env steps, seconds, return).

    Each point is also appended to the JSON-lines file ``log`` as soon as it is
    measured, so a long run that is cut short still leaves its curve.
    """
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from pwm_agent import PWM

    torch.set_num_threads(1)
    snapshots = Path(log).parent / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)

    class Curve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float, float]] = []
            self.eval_seconds = 0.0
            self._start = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                now = time.perf_counter()
                score = evaluate(self.model, env_id, episodes)
                self.points.append((self.num_timesteps, now - self._start - self.eval_seconds, score))
                with open(log, "a") as handle:
                    handle.write(json.dumps({"algo": algo, "seed": seed, "point": self.points[-1]}) + "\n")
                self.model.save(snapshots / f"{algo}-seed{seed}-{self.num_timesteps}.zip")
                self.eval_seconds += time.perf_counter() - now
            return True

    cls = PWM if algo == "pwm" else SAC
    model = cls("MlpPolicy", env_id, seed=seed, **kwargs)
    curve = Curve()
    model.learn(steps, callback=curve)
    model.save(Path(log).parent / f"{algo}-seed{seed}.zip")  # to inspect the final policy later
    return {"algo": algo, "seed": seed, "env": env_id, "curve": curve.points}


def _run_star(args: tuple) -> dict:
    return run(*args)


def write_report(results: list[dict], out: Path, env_id: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    algos = sorted({r["algo"] for r in results})
    lines = ["| env steps | " + " | ".join(f"{a} return (s)" for a in algos) + " |", "|---" * (len(algos) + 1) + "|"]
    steps = sorted({p[0] for r in results for p in r["curve"]})
    for step in steps:
        cells = []
        for algo in algos:
            pts = [p for r in results if r["algo"] == algo for p in r["curve"] if p[0] == step]
            cells.append(f"{np.mean([p[2] for p in pts]):.1f} ({np.mean([p[1] for p in pts]):.0f})" if pts else "-")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for r in results:
        pts = np.array(r["curve"])
        if len(pts) == 0:
            continue
        label = f"{r['algo']} seed {r['seed']}"
        axes[0].plot(pts[:, 0], pts[:, 2], label=label)
        axes[1].plot(pts[:, 1], pts[:, 2], label=label)
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("training wall-clock (s)")
    for ax in axes:
        ax.set_ylabel("eval return")
        ax.set_title(env_id)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--algos", nargs="+", default=["pwm", "sac"], choices=["pwm", "sac"])
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pwm-kwargs", type=json.loads, default={}, help="JSON dict of PWM constructor overrides")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path("outputs/benchmarks") / f"learning-{args.env}"
    out.mkdir(parents=True, exist_ok=True)
    log = str(out / "points.jsonl")
    jobs = [
        (algo, args.env, seed, args.steps, args.eval_every, args.episodes, args.pwm_kwargs if algo == "pwm" else {}, log)
        for seed in args.seeds
        for algo in args.algos
    ]
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
        results = pool.map(_run_star, jobs)
    write_report(results, out, args.env)
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
