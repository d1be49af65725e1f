"""Update-speed benchmark: time per PWM update, achieved GFLOP/s and predict latency.

Measures, in one process and one run:

- a plain fp32 matmul of similar size (the machine's reference GFLOP/s), timed in turn
  with the update's parts so that both see the same machine load;
- one PWM update (world model / actor / critic) at the authors' single-task
  configuration and at TD-MPC2's 5M shape, with FLOPs counted by
  ``torch.utils.flop_counter.FlopCounterMode``;
- ``predict`` latency for one observation, PWM beside SB3 SAC.

Usage::

    python benchmarks/speed.py                      # fp32
    python benchmarks/speed.py --bf16               # adds a bf16-autocast row
    python benchmarks/speed.py --compile            # adds compile_updates=True rows (torch.compile)
    python benchmarks/speed.py --configs single     # only the single-task config
    python benchmarks/speed.py --configs default    # the agent's default sizes
    python benchmarks/speed.py --breakdown          # + time share and rate inside matmuls
    python benchmarks/speed.py --device cuda --bf16 # on a GPU (the reference matmul runs there too)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
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
    # The agent's defaults (small preset, horizon 5, 2 x 4 critic minibatches) at HalfCheetah's shape.
    "default": Shape("agent defaults (HalfCheetah shape)", 17, 6, 64, "small", (128, 128), (128, 128), 5, 2, 4),
}


DEVICE = torch.device("cpu")


def sync() -> None:
    """Wait for queued GPU work, so a wall-clock interval covers it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call (GPU work included: synchronised before and after)."""
    return timeit_interleaved({"fn": fn}, repeats, warmup)["fn"]


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmm", "aten::addbmm")


def matmul_breakdown(fn: Callable[[], object], flops: int, calls: int = 3) -> dict[str, float]:
    """Share of ``fn``'s time spent inside matrix multiplies, and their own GFLOP/s
    (``flops`` per call, all of them matmul FLOPs as FlopCounterMode counts them).

    On CPU the time is the profiler's CPU time; on a GPU it is kernel time, and
    ``gpu_busy_share`` adds how much of the wall clock any kernel was running
    (the rest is launch overhead and host work the GPU waits on). Compiled code calls
    the same matmul operators (inductor leaves them to the BLAS), so ``fn`` may be a
    compiled part; ``fused_time_share`` is then the time in its generated loops.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = DEVICE.type == "cuda"
    fn()
    sync()
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        sync()
    wall = time.perf_counter() - start
    events = prof.key_averages()
    if cuda:
        total = sum(e.self_device_time_total for e in events)
        in_matmul = sum(e.device_time_total for e in events if e.key in MATMUL_OPS)
    else:
        total = sum(e.self_cpu_time_total for e in events)
        in_matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    out = {"matmul_time_share": in_matmul / total, "matmul_gflops": flops * calls / (in_matmul * 1e-6) / 1e9}
    fused = sum(e.self_cpu_time_total for e in events if e.key.startswith("## Call CompiledFxGraph"))
    if fused and not cuda:
        out["fused_time_share"] = fused / total
    if cuda:
        out["gpu_busy_share"] = total * 1e-6 / wall
    return out


def matmul_gflops(m: int, k: int, n: int, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of one ``[m, k] @ [k, n]`` product on the benchmark's device."""
    a = torch.randn(m, k, device=DEVICE, dtype=dtype)
    b = torch.randn(k, n, device=DEVICE, dtype=dtype)
    seconds = timeit(lambda: a @ b, repeats)
    return 2 * m * k * n / seconds / 1e9


def make_updater(
    shape: Shape, bf16: bool, graphs: bool = True, compiled: bool = False
) -> tuple[Updater, WindowBatch]:
    obs_space = spaces.Box(-np.inf, np.inf, (shape.obs_dim,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (shape.act_dim,), np.float32)
    policy = PWMPolicy(
        obs_space,
        act_space,
        world_model=shape.world_model,
        actor_arch=list(shape.actor_arch),
        critic_arch=list(shape.critic_arch),
    ).to(DEVICE)
    config = UpdateConfig(
        horizon=shape.horizon,
        critic_iterations=shape.critic_iterations,
        critic_minibatches=shape.critic_minibatches,
        use_bf16=bf16,
        cuda_graphs=graphs,
        compile_updates=compiled,
    )
    updater = Updater(policy, config, 5e-4, 3e-4)
    h, b = shape.horizon, shape.batch
    batch = WindowBatch(
        observations=torch.randn(h + 1, b, shape.obs_dim, device=DEVICE),
        actions=torch.rand(h, b, shape.act_dim, device=DEVICE) * 2 - 1,
        rewards=torch.randn(h, b, device=DEVICE),
        terminated=torch.zeros(h, b, device=DEVICE),
        truncated=torch.zeros(h, b, device=DEVICE),
    )
    return updater, batch


def update_parts(updater: Updater, batch: WindowBatch) -> dict[str, Callable[[], object]]:
    """The three parts of one update as calls on ``updater``."""
    imagination, _ = updater.train_actor(batch.observations[0])
    imagination = type(imagination)(*(t.clone() for t in imagination))
    return {
        "world_model": lambda: updater.train_world_model(batch),
        "actor": lambda: updater.train_actor(batch.observations[0]),
        "critic": lambda: updater.train_critic(imagination),
    }


def timeit_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, the calls taken in turn (a, b, a, b, ...)
    so that a change in the machine's load falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[key].append(time.perf_counter() - start)
    return {key: float(np.median(values)) for key, values in times.items()}


def prepare_parts(
    shape: Shape, bf16: bool, graphs: bool, compiled: bool
) -> tuple[dict[str, Callable[[], object]], float]:
    """The parts of one update of a new updater and the seconds their first calls took
    (compilation, or loading torch's cache, with ``compiled``; 0 otherwise)."""
    start = time.perf_counter()
    parts = update_parts(*make_updater(shape, bf16, graphs, compiled))
    if compiled:
        for fn in parts.values():
            fn()
    return parts, (time.perf_counter() - start if compiled else 0.0)


def reference_dims(shape: Shape) -> tuple[int, int]:
    """``(m, width)`` of the reference product ``[m, width] @ [width, width]``: a critic
    minibatch's rows and the critic's (at least 512) width."""
    return shape.batch * shape.horizon // shape.critic_minibatches, max(shape.critic_arch[0], 512)


def reference_matmul(m: int, width: int, calls: int = 20) -> tuple[Callable[[], object], int]:
    """``calls`` fp32 products ``[m, width] @ [width, width]`` as one function, and their FLOPs."""
    a = torch.randn(m, width, device=DEVICE)
    b = torch.randn(width, width, device=DEVICE)

    def run() -> None:
        for _ in range(calls):
            a @ b

    return run, 2 * m * width * width * calls


def bench_modes(
    shape: Shape, modes: dict[str, tuple[bool, bool]], repeats: int, breakdown: bool = False, graphs: bool = True
) -> tuple[dict[str, dict[str, float]], float]:
    """Time each part of one update in every mode (``name -> (bf16, compiled)``), the
    modes' calls and a reference fp32 matmul interleaved; returns the rows and the
    reference GFLOP/s (the median of its per-part medians). FLOPs are counted on an
    eager copy (graph replays and compiled code dispatch no operators to count);
    ``breakdown`` profiles a compiled mode's own calls and an eager copy otherwise
    (a replayed CUDA graph shows no operators)."""
    reference, reference_flops = reference_matmul(*reference_dims(shape))
    reference_times: list[float] = []
    prepared = {mode: prepare_parts(shape, bf16, graphs, compiled) for mode, (bf16, compiled) in modes.items()}
    eager = {bf16: update_parts(*make_updater(shape, bf16, graphs=False)) for bf16, _ in modes.values()}
    rows: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    for mode, (_, compile_s) in prepared.items():
        if modes[mode][1]:
            rows[mode]["compile_s"] = compile_s
    totals = {mode: [0, 0.0] for mode in modes}
    for name in ("world_model", "actor", "critic"):
        flops = {bf16: count_flops(parts[name]) for bf16, parts in eager.items()}
        fns = {**{mode: prepared[mode][0][name] for mode in modes}, "reference matmul": reference}
        seconds = timeit_interleaved(fns, repeats, warmup=4)
        reference_times.append(seconds.pop("reference matmul"))
        for mode, (bf16, _) in modes.items():
            row = rows[mode]
            row[f"{name}_ms"] = seconds[mode] * 1e3
            row[f"{name}_gflops"] = flops[bf16] / seconds[mode] / 1e9
            if breakdown:
                profiled = prepared[mode][0][name] if modes[mode][1] else eager[bf16][name]
                for key, value in matmul_breakdown(profiled, flops[bf16]).items():
                    row[f"{name}_{key}"] = value
            totals[mode][0] += flops[bf16]
            totals[mode][1] += seconds[mode]
    for mode, (total_flops, total_time) in totals.items():
        rows[mode].update(update_ms=total_time * 1e3, update_gflops=total_flops / total_time / 1e9,
                          update_gflop=total_flops / 1e9)
    return rows, reference_flops / float(np.median(reference_times)) / 1e9


def predict_latency(repeats: int = 2000) -> dict[str, float]:
    """Median ``predict`` time for one observation: PWM (single-task sizes) vs SB3 SAC."""
    env = gym.make("Pendulum-v1")
    from pwm_agent import PWM

    pwm = PWM(
        "MlpPolicy",
        env,
        policy_kwargs=dict(world_model="pwm", actor_arch=[400, 200, 100], critic_arch=[400, 200]),
        device=DEVICE,
    )
    sac = SAC("MlpPolicy", env, device=DEVICE)
    obs, _ = env.reset(seed=0)
    out = {}
    for name, model in (("pwm", pwm), ("sac", sac)):
        out[f"{name}_predict_us"] = timeit(lambda: model.predict(obs, deterministic=True), repeats, 50) * 1e6
    return out


def describe_device() -> str:
    """The device's name as a person reads it (GPU model, or CPU with thread count)."""
    if DEVICE.type == "cuda":
        return f"{DEVICE} ({torch.cuda.get_device_name(DEVICE)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["single", "5m"], choices=sorted(SHAPES))
    parser.add_argument("--bf16", action="store_true", help="also time each config under bf16 autocast")
    parser.add_argument("--compile", action="store_true",
                        help="also time each mode with compile_updates=True (torch.compile; CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true",
                        help="profile each part: time share inside matmuls and their own GFLOP/s")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=str, default="", help="write results to this JSON file")
    parser.add_argument("--device", default="cpu", help="torch device to time on (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--batch", type=int, default=0, help="override every config's batch size (0: keep)")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="time eager GPU updates (no CUDA graphs)")
    parser.add_argument("--predict-only", action="store_true", help="only the predict latency")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results: dict[str, object] = {"threads": torch.get_num_threads(), "device": describe_device()}
    print(f"device: {results['device']}" + (", CUDA graphs off" if args.no_cuda_graphs else ""))
    for key in [] if args.predict_only else args.configs:
        shape = replace(SHAPES[key], batch=args.batch) if args.batch else SHAPES[key]
        m, width = reference_dims(shape)
        graphs = not args.no_cuda_graphs
        results[key] = {"name": shape.name, "batch": shape.batch, "cuda_graphs": graphs}
        if args.bf16:
            results[key]["matmul_gflops_bf16"] = matmul_gflops(m, width, width, dtype=torch.bfloat16)
        modes = {
            ("bf16" if bf16 else "fp32") + (" compiled" if compiled else ""): (bf16, compiled)
            for bf16 in ((False, True) if args.bf16 else (False,))
            for compiled in ((False, True) if args.compile else (False,))
        }
        rows, ref = bench_modes(shape, modes, args.repeats, args.breakdown, graphs)
        results[key]["matmul_gflops"] = ref
        results[key].update(rows)
        for mode, row in rows.items():
            ratio = row["update_gflops"] / ref
            bf16_ref = results[key].get("matmul_gflops_bf16") if mode.startswith("bf16") else None
            print(
                f"{shape.name}, batch {shape.batch} [{mode}]: update {row['update_ms']:.1f} ms "
                f"(world model {row['world_model_ms']:.1f}, actor {row['actor_ms']:.1f}, "
                f"critic {row['critic_ms']:.1f}); {row['update_gflop']:.2f} GFLOP -> "
                f"{row['update_gflops']:.1f} GFLOP/s = {ratio:.0%} of fp32 matmul ({ref:.1f} GFLOP/s)"
                + ("" if bf16_ref is None else f", {row['update_gflops'] / bf16_ref:.0%} of bf16 matmul ({bf16_ref:.1f})")
                + (f"; first calls (compiling) {row['compile_s']:.0f} s" if "compile_s" in row else "")
            )
            for part in ("world_model", "actor", "critic") if args.breakdown else ():
                busy, fused = row.get(f"{part}_gpu_busy_share"), row.get(f"{part}_fused_time_share")
                print(
                    f"  {part}: {row[f'{part}_matmul_time_share']:.0%} of the time in matmuls, which run at "
                    f"{row[f'{part}_matmul_gflops']:.1f} GFLOP/s ({row[f'{part}_matmul_gflops'] / ref:.0%} of the reference)"
                    + ("" if busy is None else f"; GPU busy {busy:.0%} of the wall clock")
                    + ("" if fused is None else f"; {fused:.0%} in the compiled fused loops")
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
