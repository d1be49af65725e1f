"""Offline benchmark: policy extraction from a mixed dataset, sampling cost vs size, extraction speed.

Parts (each optional, all by default):

- ``extract``: collect a mixed Pendulum-v1 dataset (uniform random actions plus a
  partly trained SB3 SAC acting stochastically), write and re-read it as a Minari
  dataset, pre-train a PWM world model on it, extract a policy from the frozen model
  (no env steps) and evaluate it every ``--eval-every`` updates on 10 fixed starts.
- ``sampling``: seconds per window batch (B 256, H 16) from datasets of 1e4, 1e6
  and 1e7 transitions (memory-mapped files), side by side in one run.
- ``speed``: seconds per 1,000 extraction updates at the TD-MPC2 5M shape (batch 512,
  horizon 16) and at the default ``small`` preset.

Usage::

    python benchmarks/offline.py --parts extract --out outputs/benchmarks/offline
    python benchmarks/offline.py --parts sampling speed
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from evaluation import evaluate
import torch

from pwm_agent import PWM, datasets


def mixed_dataset(env_id: str, random_steps: int, policy_steps: int, sac_steps: int, folder: Path) -> dict[str, Any]:
    """Collect random + partly trained SAC data, save it as Minari, read it back."""
    from stable_baselines3 import SAC

    t0 = time.perf_counter()
    random_part = datasets.collect(env_id, "random", random_steps, seed=0)
    sac = SAC("MlpPolicy", env_id, seed=0).learn(sac_steps)
    sac_part = datasets.collect(env_id, sac, policy_steps, seed=1, deterministic=False)
    path = datasets.save_minari(datasets.concatenate([random_part, sac_part]), folder / "pendulum-mixed-v0", env=env_id)
    data = datasets.load(path)
    return {
        "data": data,
        "path": str(path),
        "transitions": data.num_transitions,
        "episodes": data.num_episodes,
        "mean_return": float(data.episode_returns().mean()),
        "random_mean_return": float(random_part.episode_returns().mean()),
        "sac_mean_return": float(sac_part.episode_returns().mean()),
        "sac_train_steps": sac_steps,
        "collect_seconds": time.perf_counter() - t0,
    }


def extract_part(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        info = mixed_dataset(args.env, args.random_steps, args.policy_steps, args.sac_steps, Path(tmp))
    data = info.pop("data")
    agent = PWM("MlpPolicy", None, observation_space=data.observation_space, action_space=data.action_space, seed=0)
    t0 = time.perf_counter()
    val = agent.pretrain_world_model(data, args.pretrain_steps, eval_freq=args.pretrain_steps)
    pretrain_seconds = time.perf_counter() - t0
    curve: list[tuple[int, float]] = []
    t0, done = time.perf_counter(), 0
    while done < args.extract_steps:
        chunk = min(args.eval_every, args.extract_steps - done)
        agent.extract_policy(data, chunk)
        done += chunk
        curve.append((done, evaluate(agent, args.env)))
        print(f"extract {done}: {curve[-1][1]:.1f}", flush=True)
    return {
        **info,
        "pretrain_steps": args.pretrain_steps,
        "pretrain_seconds": pretrain_seconds,
        "validation": val,
        "extract_seconds": time.perf_counter() - t0,
        "curve": curve,
    }


def sampling_part(sizes: list[int], obs_dim: int = 17, act_dim: int = 6, batch: int = 256, horizon: int = 16) -> list[dict]:
    """Seconds per window batch from on-disk array datasets of each size (1,000-step
    episodes, written by ``write_arrays``, opened memory-mapped by ``datasets.load``)."""
    from pwm_agent.datasets.arrays import write_arrays

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            n_eps, rng = n // 1000, np.random.default_rng(n)

            def episodes(n_eps: int = n_eps, rng: np.random.Generator = rng) -> Any:
                for _ in range(n_eps):
                    yield {"observations": rng.standard_normal((1001, obs_dim), dtype=np.float32),
                           "actions": rng.uniform(-1, 1, (1000, act_dim)).astype(np.float32),
                           "rewards": rng.standard_normal(1000, dtype=np.float32),
                           "terminations": np.zeros(1000, bool), "truncations": np.eye(1, 1000, 999, dtype=bool)[0]}

            folder = write_arrays(Path(tmp) / f"d{n}", (n, n_eps, obs_dim, act_dim), episodes(), {})
            raw = 4 * ((n + n_eps) * obs_dim + n * act_dim + n) + 2 * n
            stored = sum(f.stat().st_size for f in folder.iterdir())
            t0 = time.perf_counter()
            data = datasets.load(folder)
            load_seconds = time.perf_counter() - t0
            data.sample_windows(batch, horizon, rng)
            t0, calls = time.perf_counter(), 200
            for _ in range(calls):
                data.sample_windows(batch, horizon, rng)
            rows.append({"transitions": n, "seconds_per_batch": (time.perf_counter() - t0) / calls,
                         "load_seconds": load_seconds, "storage_over_raw": stored / raw})
            print(rows[-1], flush=True)
            del data
    return rows


SPEED_SHAPES = {"small": (64, 5), "tdmpc2-1M": (512, 16), "tdmpc2-5M": (512, 16), "tdmpc2-48M": (512, 16)}


def speed_part(updates: int = 10, presets: tuple[str, ...] = ("small", "tdmpc2-5M"), bf16: tuple[bool, ...] = (False,),
               device: str = "auto", graphs: tuple[bool, ...] = (True,)) -> list[dict]:
    """Seconds per 1,000 extraction updates (frozen world model) per preset, and the
    wall-clock of the issue's 10,000-update extraction extrapolated from them.
    ``bf16`` and ``graphs`` list the autocast and CUDA-graph settings to time (a row each)."""
    rows = []
    obs_space = gym.spaces.Box(-np.inf, np.inf, (24,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    rng = np.random.default_rng(0)
    data = datasets.OfflineDataset.from_episodes(
        [{"observations": rng.standard_normal((501, 24)), "actions": rng.uniform(-1, 1, (500, 6)),
          "rewards": rng.standard_normal(500)} for _ in range(4)]
    )
    for preset, use_bf16, use_graphs in itertools.product(presets, bf16, graphs):
        batch, horizon = SPEED_SHAPES[preset]
        agent = PWM("MlpPolicy", None, observation_space=obs_space, action_space=act_space, batch_size=batch,
                    horizon=horizon, policy_kwargs={"world_model": preset}, seed=0, use_bf16=use_bf16,
                    device=device, cuda_graphs=use_graphs)
        agent.extract_policy(data, 5)  # warm-up (and CUDA graph recording)
        _sync(agent.device)
        t0 = time.perf_counter()
        agent.extract_policy(data, updates)
        _sync(agent.device)
        per_1000 = (time.perf_counter() - t0) / updates * 1000
        name = torch.cuda.get_device_name(agent.device) if agent.device.type == "cuda" else "cpu"
        rows.append({"preset": preset, "batch": batch, "horizon": horizon, "device": f"{agent.device} ({name})",
                     "bf16": use_bf16, "cuda_graphs": use_graphs, "seconds_per_1000_updates": per_1000,
                     "minutes_per_10000_updates": per_1000 / 6,
                     # failed recordings (tried again after a warm-up); a step whose every try failed
                     # ran eagerly, so its row does not time graphs
                     "graph_recording_errors": {k: g.recording_errors for k, g in agent.updater.graphs.items()
                                                if g.recording_errors},
                     "graph_failures": {k: g.failure for k, g in agent.updater.graphs.items() if g.failure}})
        print(rows[-1], flush=True)
    return rows


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock intervals cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["extract", "sampling", "speed"],
                        choices=["extract", "sampling", "speed"])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--random-steps", type=int, default=25_000)
    parser.add_argument("--policy-steps", type=int, default=25_000)
    parser.add_argument("--sac-steps", type=int, default=3_000, help="SAC training steps of the data policy")
    parser.add_argument("--pretrain-steps", type=int, default=20_000)
    parser.add_argument("--extract-steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--speed-presets", nargs="+", default=["small", "tdmpc2-5M"], choices=sorted(SPEED_SHAPES),
                        help="world-model sizes timed by the speed part (device 'auto': a GPU when there is one)")
    parser.add_argument("--speed-updates", type=int, default=10, help="timed extraction updates per size")
    parser.add_argument("--speed-bf16", action="store_true", help="the speed part also times bf16 autocast")
    parser.add_argument("--speed-eager", action="store_true", help="the speed part also times eager GPU updates")
    parser.add_argument("--device", default="auto", help="device of the speed part (auto: a GPU when there is one)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/offline"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"torch_threads": args.threads}
    if "extract" in args.parts:
        results["extract"] = extract_part(args)
    if "sampling" in args.parts:
        results["sampling"] = sampling_part(args.sizes)
    if "speed" in args.parts:
        modes = (False, True) if args.speed_bf16 else (False,)
        graphs = (True, False) if args.speed_eager else (True,)
        results["speed"] = speed_part(args.speed_updates, tuple(args.speed_presets), modes, args.device, graphs)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
