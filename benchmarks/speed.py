"""Update-speed benchmark: time per PWM update, achieved GFLOP/s and predict latency.

Measures, in one process and one run:

- a plain fp32 matmul of similar size (the machine's reference GFLOP/s);
- one PWM update (world model / actor / critic) at the authors' single-task
  configuration and at TD-MPC2's 5M shape, with FLOPs counted by
  ``torch.utils.flop_counter.FlopCounterMode``;
- ``predict`` latency for one observation, PWM beside SB3 SAC.

Usage::

    python benchmarks/speed.py                      # fp32
    python benchmarks/speed.py --bf16               # adds a bf16-autocast row
    python benchmarks/speed.py --configs single     # only the single-task config
    python benchmarks/speed.py --breakdown          # + time share and rate inside matmuls
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from torch.utils.flop_counter import FlopCounterMode

from pwm_agent.buffers import WindowBatch
from pwm_agent.pwm.policies import PWMPolicy
from pwm_agent.pwm.updates import UpdateConfig, Updater


@dataclass(frozen=True)
class Shape:
    """One benchmarked configuration."""

    name: str
    obs_dim: int
    act_dim: int
    batch: int
    world_model: str
    actor_arch: tuple[int, ...]
    critic_arch: tuple[int, ...]
    horizon: int = 16
    critic_iterations: int = 8
    critic_minibatches: int = 4


SHAPES = {
    # The authors' single-task (dflex) configuration at the Ant shape.
    "single": Shape("pwm single-task (Ant shape)", 37, 8, 128, "pwm", (400, 200, 100), (400, 200)),
    # TD-MPC2 5M world model, multi-task extraction batch.
    "5m": Shape("tdmpc2-5M (batch 512)", 24, 6, 512, "tdmpc2-5M", (512, 512), (512, 512)),
}


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmm", "aten::addbmm")


def matmul_breakdown(fn: Callable[[], object], flops: int, calls: int = 3) -> dict[str, float]:
    """Share of ``fn``'s CPU time spent inside matrix multiplies, and their own GFLOP/s
    (``flops`` per call, all of them matmul FLOPs as FlopCounterMode counts them)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    in_matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    return {"matmul_time_share": in_matmul / total, "matmul_gflops": flops * calls / (in_matmul * 1e-6) / 1e9}


def matmul_gflops(m: int, k: int, n: int, repeats: int = 20) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    seconds = timeit(lambda: a @ b, repeats)
    return 2 * m * k * n / seconds / 1e9


def make_updater(shape: Shape, bf16: bool) -> tuple[Updater, WindowBatch]:
    obs_space = spaces.Box(-np.inf, np.inf, (shape.obs_dim,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (shape.act_dim,), np.float32)
    policy = PWMPolicy(
        obs_space,
        act_space,
        world_model=shape.world_model,
        actor_arch=list(shape.actor_arch),
        critic_arch=list(shape.critic_arch),
    )
    config = UpdateConfig(
        horizon=shape.horizon,
        critic_iterations=shape.critic_iterations,
        critic_minibatches=shape.critic_minibatches,
        use_bf16=bf16,
    )
    updater = Updater(policy, config, 5e-4, 3e-4)
    h, b = shape.horizon, shape.batch
    batch = WindowBatch(
        observations=torch.randn(h + 1, b, shape.obs_dim),
        actions=torch.rand(h, b, shape.act_dim) * 2 - 1,
        rewards=torch.randn(h, b),
        terminated=torch.zeros(h, b),
        truncated=torch.zeros(h, b),
    )
    return updater, batch


def bench_update(shape: Shape, bf16: bool, repeats: int, breakdown: bool = False) -> dict[str, float]:
    updater, batch = make_updater(shape, bf16)
    imagination, _ = updater.train_actor(batch.observations[0])
    parts = {
        "world_model": lambda: updater.train_world_model(batch),
        "actor": lambda: updater.train_actor(batch.observations[0]),
        "critic": lambda: updater.train_critic(imagination),
    }
    result: dict[str, float] = {}
    total_flops, total_time = 0, 0.0
    for name, fn in parts.items():
        flops = count_flops(fn)
        seconds = timeit(fn, repeats)
        result[f"{name}_ms"] = seconds * 1e3
        result[f"{name}_gflops"] = flops / seconds / 1e9
        if breakdown:
            for key, value in matmul_breakdown(fn, flops).items():
                result[f"{name}_{key}"] = value
        total_flops += flops
        total_time += seconds
    result["update_ms"] = total_time * 1e3
    result["update_gflops"] = total_flops / total_time / 1e9
    result["update_gflop"] = total_flops / 1e9
    return result


def predict_latency(repeats: int = 2000) -> dict[str, float]:
    """Median ``predict`` time for one observation: PWM (single-task sizes) vs SB3 SAC."""
    env = gym.make("Pendulum-v1")
    from pwm_agent import PWM

    pwm = PWM(
        "MlpPolicy",
        env,
        policy_kwargs=dict(world_model="pwm", actor_arch=[400, 200, 100], critic_arch=[400, 200]),
    )
    sac = SAC("MlpPolicy", env)
    obs, _ = env.reset(seed=0)
    out = {}
    for name, model in (("pwm", pwm), ("sac", sac)):
        out[f"{name}_predict_us"] = timeit(lambda: model.predict(obs, deterministic=True), repeats, 50) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["single", "5m"], choices=sorted(SHAPES))
    parser.add_argument("--bf16", action="store_true", help="also time each config under bf16 autocast")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true",
                        help="profile each part: time share inside matmuls and their own GFLOP/s")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=str, default="", help="write results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict[str, object] = {"threads": torch.get_num_threads()}
    for key in args.configs:
        shape = SHAPES[key]
        width = max(shape.critic_arch[0], 512)
        ref = matmul_gflops(shape.batch * shape.horizon // shape.critic_minibatches, width, width)
        rows = {"fp32": bench_update(shape, False, args.repeats, args.breakdown)}
        if args.bf16:
            rows["bf16"] = bench_update(shape, True, args.repeats, args.breakdown)
        results[key] = {"name": shape.name, "matmul_gflops": ref, **rows}
        for mode, row in rows.items():
            ratio = row["update_gflops"] / ref
            print(
                f"{shape.name} [{mode}]: update {row['update_ms']:.1f} ms "
                f"(world model {row['world_model_ms']:.1f}, actor {row['actor_ms']:.1f}, "
                f"critic {row['critic_ms']:.1f}); {row['update_gflop']:.2f} GFLOP -> "
                f"{row['update_gflops']:.1f} GFLOP/s = {ratio:.0%} of fp32 matmul ({ref:.1f} GFLOP/s)"
            )
            for part in ("world_model", "actor", "critic") if args.breakdown else ():
                print(
                    f"  {part}: {row[f'{part}_matmul_time_share']:.0%} of the time in matmuls, which run at "
                    f"{row[f'{part}_matmul_gflops']:.1f} GFLOP/s ({row[f'{part}_matmul_gflops'] / ref:.0%} of the reference)"
                )
    latency = predict_latency()
    results["predict"] = latency
    print(
        f"predict (one obs, single-task sizes): PWM {latency['pwm_predict_us']:.1f} us, "
        f"SB3 SAC {latency['sac_predict_us']:.1f} us, ratio {latency['pwm_predict_us'] / latency['sac_predict_us']:.2f}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
