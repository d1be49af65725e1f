"""Data-parallel world-model pretraining: 2 CPU processes with the gloo backend."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import tiny_kwargs
from pwm_agent import PWM, datasets
from pwm_agent.buffers import WindowBatch

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

WORLD = 2


def _data() -> datasets.OfflineDataset:
    return datasets.collect("Pendulum-v1", "random", 800, seed=0)


def _agent(data: datasets.OfflineDataset) -> PWM:
    return PWM("MlpPolicy", None, observation_space=data.observation_space, action_space=data.action_space,
               seed=0, **tiny_kwargs())


def _global_batch(data: datasets.OfflineDataset, agent: PWM, size: int = 32) -> WindowBatch:
    import numpy as np

    return data.sample_windows(size, agent.horizon, np.random.default_rng(3), action_space=agent.action_space)


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        from pwm_agent.pwm.distributed import GradientSync

        data = _data()
        agent = _agent(data)
        batch = _global_batch(data, agent)
        half = batch.observations.shape[1] // WORLD
        local = WindowBatch(*(t[:, rank * half : (rank + 1) * half] for t in batch[:5]))
        agent.updater.sync = GradientSync()
        agent.updater.world_model_backward(local)
        grads = [p.grad.clone() for p in agent.policy.world_model.parameters()]
        agent.updater.sync = None
        # full pretraining run on per-rank shards, with a checkpoint from rank 0
        fresh = _agent(data)
        fresh.pretrain_world_model(data, 6, checkpoint_freq=6, checkpoint_path=out, validation_fraction=0.2)
        params = [p.detach().clone() for p in fresh.policy.parameters()]
        multitask = _multitask_run()
        torch.save({"grads": grads, "params": params, "scale": fresh.policy.world_model.reward_scale.clone(),
                    "multitask": multitask}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _multitask_run() -> list[torch.Tensor]:
    """Pretrain a 2-task world model whose embedding rows have norms above 1, with episodes
    of alternating tasks so that rank 0 sees only task 0 and rank 1 only task 1 (each rank
    looks up, and max-norm rescales, a different row); returns the world-model parameters."""
    import numpy as np
    from gymnasium import spaces

    base = _data()
    data = datasets.OfflineDataset(base.observations, base.actions, base.rewards, base.terminations,
                                   base.truncations, base.episode_lengths, np.arange(base.num_episodes) % 2)
    agent = PWM("MlpPolicy", None, observation_space=spaces.Box(-np.inf, np.inf, (3,), np.float32),
                action_space=spaces.Box(-2.0, 2.0, (1,), np.float32), seed=0,
                **tiny_kwargs(policy_kwargs=dict(world_model="small", world_model_kwargs=dict(
                    latent_dim=16, enc_dims=[32], mlp_dims=[32, 32], num_tasks=2, task_dim=4))))
    with torch.no_grad():
        emb = agent.policy.world_model.task_emb.weight
        emb.copy_(3.0 * emb / emb.norm(dim=1, keepdim=True))  # norm 3: every row needs the max-norm rescale
    agent.pretrain_world_model(data, 4, validation_fraction=0)
    return [p.detach().clone() for p in agent.policy.world_model.parameters()]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_averaged_gradient_equals_single_process_gradient(ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    _, results = ranks
    data = _data()
    agent = _agent(data)
    agent.updater.world_model_backward(_global_batch(data, agent))
    for rank in results:
        for single, averaged in zip(agent.policy.world_model.parameters(), rank["grads"]):
            torch.testing.assert_close(averaged, single.grad, rtol=1e-5, atol=1e-6)


def test_multitask_ranks_stay_identical(ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    _, results = ranks
    for a, b in zip(results[0]["multitask"], results[1]["multitask"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ranks_stay_identical_and_rank0_checkpoint_loads(ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    out, results = ranks
    for a, b in zip(results[0]["params"], results[1]["params"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(results[0]["scale"], results[1]["scale"])
    assert sorted(p.name for p in out.glob("*.zip")) == ["pwm_pretrain_6_steps.zip"]
    loaded = PWM.load(out / "pwm_pretrain_6_steps.zip")
    for a, b in zip(loaded.policy.parameters(), results[0]["params"]):
        torch.testing.assert_close(a.detach(), b)
