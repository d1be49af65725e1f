"""Train the multi-task world model shipped with pwm_agent, end to end on a CPU.

Stages (each skipped when its output exists, so the script resumes):

1. ``data``: for each task, train a PWM agent online (``--online-steps``), then collect
   ``--policy-steps`` transitions with it (stochastic actions) and ``--random-steps``
   with uniform random actions; write each task's data as a Minari dataset. With
   ``--keep-history`` the online agent's replay buffer (its learning history, from
   random to trained, as in TD-MPC2's and PWM's multi-task data) comes first.
2. ``pretrain``: label each task's data with its id, zero-pad to the largest dims and
   pre-train one multi-task world model (``--preset``, default TD-MPC2's 1M shape; task_dim 96) on all
   of it;
   save it in TD-MPC2's layout with the task table (``save_world_model``).
3. ``extract``: for each task, build ``PWM.from_pretrained(checkpoint, task)``, extract a
   policy from the frozen model with that task's data (TD(lambda) critic targets, and
   the authors' one-step targets for comparison), evaluate it on 10 fixed starts. With
   ``--select-every N`` the weights are chosen by an evaluation every N updates on other
   episodes (``extract_policy(keep_best=True)``) before that final score.

    python examples/multitask/train_checkpoint.py --out outputs/mt4 --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

import pwm_agent  # noqa: F401  (registers pwm_agent/<task>)
from pwm_agent import PWM, datasets
from pwm_agent.checkpoints import load_checkpoint, save_world_model
from pwm_agent.envs.task_sets import MT30, TaskSpec, task_id

TASKS = ["walker-stand", "cartpole-swingup", "reacher-easy", "cup-catch"]
logger = logging.getLogger("train-checkpoint")


def evaluate(agent: Any, env_id: str, episodes: int = 10) -> float:
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=10_000 + i)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.predict(obs, deterministic=True)[0])
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def collect_task(args: tuple[str, Path, int, int, int, bool]) -> dict[str, Any]:
    """Stage 1 for one task (runs in its own process, one torch thread)."""
    name, out, online_steps, policy_steps, random_steps, keep_history = args
    torch.set_num_threads(1)
    env_id = f"pwm_agent/{name}"
    t0 = time.perf_counter()
    # 1000 random steps, as when the shipped checkpoints were made ("auto" would take 2500 here).
    agent = PWM("MlpPolicy", env_id, seed=0, learning_starts=1000).learn(online_steps)
    agent.save(out / f"online-{name}")
    history = [datasets.from_replay_buffer(agent)] if keep_history else []
    policy_part = datasets.collect(env_id, agent, policy_steps, seed=1)
    random_part = datasets.collect(env_id, "random", random_steps, seed=2)
    datasets.save_minari(datasets.concatenate([*history, policy_part, random_part]), out / f"{name}-v0",
                         env=env_id, algorithm_name="PWM online" + (" (replay)" if keep_history else "") + " + random")
    return {
        "task": name,
        "online_agent_eval": evaluate(agent, env_id),
        "history_return": float(history[0].episode_returns().mean()) if history else None,
        "data_policy_return": float(policy_part.episode_returns().mean()),
        "random_return": float(random_part.episode_returns().mean()),
        "seconds": time.perf_counter() - t0,
    }


def specs(names: list[str]) -> list[TaskSpec]:
    return [MT30[task_id(name, MT30)] for name in names]


def checkpoint_name(n_tasks: int, preset: str) -> str:
    """``mt<n>-<size>.pt`` for a ``tdmpc2-<size>`` preset."""
    return f"mt{n_tasks}-{preset.rsplit('-', 1)[-1]}.pt"


def pretrain(out: Path, steps: int, batch_size: int, names: list[str], preset: str, chunks: int = 1) -> dict[str, Any]:
    """Stage 2: one multi-task world model on all tasks' data, in ``chunks`` calls of
    ``steps / chunks`` steps, each saved (``mt4-5M-10k.pt``, ...; the last one also under
    the checkpoint's own name)."""
    tasks = specs(names)
    data = datasets.concatenate([datasets.load(out / f"{t.name}-v0").with_task(i) for i, t in enumerate(tasks)],
                                pad=True)
    obs_dim, act_dim = max(t.obs_dim for t in tasks), max(t.action_dim for t in tasks)
    agent = PWM(
        "MlpPolicy", None, seed=0, batch_size=batch_size, horizon=5,
        observation_space=spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        policy_kwargs=dict(world_model=preset,
                           world_model_kwargs=dict(num_tasks=len(tasks), task_dim=96, termination_head=False),
                           action_dims=[t.action_dim for t in tasks]),
    )
    t0, name = time.perf_counter(), checkpoint_name(len(tasks), preset)
    per_chunk, validation = steps // chunks, []
    for chunk in range(1, chunks + 1):
        val = agent.pretrain_world_model(data, per_chunk, eval_freq=max(per_chunk // 5, 1), progress_bar=True)
        validation.append(val)
        if chunks > 1:
            save_world_model(agent.policy.world_model, out / name.replace(".pt", f"-{chunk * per_chunk // 1000}k.pt"),
                             tasks)
    path = save_world_model(agent.policy.world_model, out / name, tasks)
    params = sum(p.numel() for p in agent.policy.world_model.parameters())
    return {"checkpoint": str(path), "parameters": params, "pretrain_steps": per_chunk * chunks, "chunks": chunks,
            "seconds": time.perf_counter() - t0, "validation": validation[-1], "validation_per_chunk": validation}


def extract(args: tuple[str, Path, int, float, str, int, float | None]) -> dict[str, Any]:
    """Stage 3 for one task and one critic-target setting. With ``select_every`` the
    weights are chosen by evaluations on an env seeded apart (``keep_best``), then scored
    on the fixed starts of :func:`evaluate`, which the choice never saw."""
    name, out, steps, gae_lambda, checkpoint_file, select_every, learning_rate = args
    torch.set_num_threads(1)
    checkpoint = out / checkpoint_file
    rate = {} if learning_rate is None else {"learning_rate": learning_rate}
    agent = PWM.from_pretrained(checkpoint, task=name, seed=0, gae_lambda=gae_lambda, horizon=5, **rate)
    data = datasets.load(out / f"{name}-v0")
    t0 = time.perf_counter()
    row: dict[str, Any] = {"task": name, "gae_lambda": gae_lambda, "learning_rate": agent.learning_rate}
    if select_every:
        env = gym.make(f"pwm_agent/{name}")
        env.reset(seed=20_000)
        evaluation = agent.extract_policy(data, steps, eval_env=env, eval_freq=select_every, n_eval_episodes=5,
                                          keep_best=True)
        assert evaluation is not None
        row.update(best_step=evaluation.best_step,
                   selection=[[s, float(np.mean(r)) / 1000] for s, r in zip(evaluation.steps, evaluation.results)])
    else:
        agent.extract_policy(data, steps)
    return {**row, "score": evaluate(agent, f"pwm_agent/{name}") / 1000, "seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/mt4"))
    parser.add_argument("--online-steps", type=int, default=10_000)
    parser.add_argument("--policy-steps", type=int, default=10_000)
    parser.add_argument("--random-steps", type=int, default=5_000)
    parser.add_argument("--pretrain-steps", type=int, default=20_000)
    parser.add_argument("--pretrain-batch", type=int, default=128)
    parser.add_argument("--pretrain-chunks", type=int, default=1,
                        help="pre-train in this many calls, saving the model after each (mt4-5M-10k.pt, ...)")
    parser.add_argument("--extract-steps", type=int, default=5_000)
    parser.add_argument("--select-every", type=int, default=0,
                        help="evaluate every N extraction updates (5 episodes, an env seeded apart) and keep the "
                             "best weights; 0: keep the last ones (no env interaction)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="extraction learning rate (default: from_pretrained's, 1e-4; mt4-1M's docs table used 5e-4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=TASKS, help="MT30 task names (default: the shipped four)")
    parser.add_argument("--preset", default="tdmpc2-1M", help="world-model preset (tdmpc2-1M, tdmpc2-5M, ...)")
    parser.add_argument("--keep-history", action="store_true",
                        help="put each online agent's replay buffer (its learning history) in the data too")
    parser.add_argument("--ship", default=None, help="copy the result into this folder (pwm_agent/pretrained)")
    parser.add_argument("--ship-dtype", default="float16", choices=["float16", "float32"],
                        help="storage precision of the shipped copy (float16 halves it; loading upcasts; "
                             "mt4-1M was shipped in float32, mt4-5M in float16)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = args.out / "settings.json"
    if not settings.exists():
        settings.write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=1))
    report_path = args.out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    ctx = mp.get_context("spawn")
    todo = [t for t in args.tasks if not (args.out / f"{t}-v0").exists()]
    if todo:
        with ctx.Pool(args.workers) as pool:
            for row in pool.imap_unordered(collect_task, [(t, args.out, args.online_steps, args.policy_steps,
                                                           args.random_steps, args.keep_history) for t in todo]):
                report.setdefault("data", {})[row["task"]] = row
                logger.info("data %s", row)
                report_path.write_text(json.dumps(report, indent=1))
    checkpoint = checkpoint_name(len(args.tasks), args.preset)
    # one entry per checkpoint, so other presets or task sets can share the data folder
    run = report.setdefault("models", {}).setdefault(checkpoint, {})
    if not (args.out / checkpoint).exists():
        run["pretrain"] = pretrain(args.out, args.pretrain_steps, args.pretrain_batch, args.tasks, args.preset,
                                   args.pretrain_chunks)
        logger.info("pretrain %s", run["pretrain"])
        report_path.write_text(json.dumps(report, indent=1))
    key = "extract" + (f"-select{args.select_every}" if args.select_every else "") + (
        f"-lr{args.learning_rate:g}" if args.learning_rate is not None else "")
    if key not in run:
        jobs = [(t, args.out, args.extract_steps, lam, checkpoint, args.select_every, args.learning_rate)
                for t in args.tasks for lam in (0.95, 0.0)]
        with ctx.Pool(args.workers) as pool:
            run[key] = list(pool.imap(extract, jobs))
        report_path.write_text(json.dumps(report, indent=1))
    for row in run[key]:
        logger.info("%s %s", key, {k: v for k, v in row.items() if k != "selection"})
    if args.ship:
        ship(args.out, Path(args.ship), checkpoint, args.tasks, getattr(torch, args.ship_dtype))


def ship(out: Path, target: Path, checkpoint_file: str, names: list[str], dtype: torch.dtype) -> None:
    """Stage 4: copy the checkpoint (weights stored as ``dtype``) and, per task, 2 policy +
    2 random episodes (plus 4 spread over the learning history, with ``--keep-history``) as
    array folders, for the demo's policy extraction, into ``target`` (the package's data)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    checkpoint = out / checkpoint_file
    loaded = load_checkpoint(checkpoint)
    save_world_model(loaded.world_model, target / checkpoint.name, loaded.tasks, dtype=dtype)
    for name in names:
        data = datasets.load(out / f"{name}-v0")
        n = data.num_episodes
        # the data holds the learning history (with --keep-history), the trained policy's episodes,
        # then random ones
        policy, random_steps = collected_steps(out)
        ends = np.cumsum(data.episode_lengths)
        online = int(ends[-1]) - policy - random_steps  # the history's transitions (0 without it)
        policy_start = int(np.searchsorted(ends, online, "right"))
        random_start = int(np.searchsorted(ends, online + policy, "right"))
        keep = [policy_start, policy_start + 1, random_start, random_start + 1] if random_start + 1 < n else [0, 1]
        if policy_start >= 4:  # 4 episodes spread over the learning history: a wider spread of start states
            keep = [int(i) for i in np.linspace(0, policy_start - 1, 4).round()] + keep
        folder = target / checkpoint.stem / name
        if folder.exists():
            shutil.rmtree(folder)
        datasets.save_arrays(data.select(keep), folder)
        logger.info("shipped %s: episodes %s", folder, keep)


def collected_steps(out: Path) -> tuple[int, int]:
    """Transitions of the trained-policy and of the random parts of each task's data
    (from the run's settings)."""
    settings = json.loads((out / "settings.json").read_text())
    return int(settings["policy_steps"]), int(settings["random_steps"])


if __name__ == "__main__":
    main()
