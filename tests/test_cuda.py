"""CUDA: every part that runs on a GPU gives what it gives on CPU (skipped without a GPU).

CI has no GPU, so these run where one is present (``python -m pytest tests/test_cuda.py``
on a GPU machine). TF32 is off in torch's defaults, so fp32 results agree closely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from pwm_agent import PWM, SHAC, datasets
from pwm_agent.buffers import WindowBatch
from pwm_agent.planning import MPPIConfig, MPPIPlanner
from pwm_agent.pwm.graphs import StepGraph

from conftest import tiny_kwargs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _pendulum_agent(device: str, **overrides: object) -> PWM:
    return PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(device=device, **overrides))


def test_learn_places_everything_on_the_gpu_and_loads_on_cpu(tmp_path: Path) -> None:
    agent = _pendulum_agent("cuda")
    agent.learn(120)
    assert all(p.device.type == "cuda" for p in agent.policy.parameters())
    batch = agent.replay_buffer.sample_windows(8, agent.horizon)
    assert batch.observations.device.type == "cuda" and batch.observations.shape[:2] == (agent.horizon + 1, 8)
    obs = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    on_gpu, _ = agent.predict(obs, deterministic=True)
    agent.save(tmp_path / "agent")
    on_cpu = PWM.load(tmp_path / "agent", device="cpu")
    assert all(p.device.type == "cpu" for p in on_cpu.policy.parameters())
    np.testing.assert_allclose(on_cpu.predict(obs, deterministic=True)[0], on_gpu, atol=1e-5)
    agent.learn(40, reset_num_timesteps=False)
    assert agent.num_timesteps == 160


def test_update_matches_cpu_from_the_same_weights() -> None:
    cpu, gpu = _pendulum_agent("cpu"), _pendulum_agent("cuda")
    gpu.policy.load_state_dict(cpu.policy.state_dict())
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(5, 16, 3, generator=gen)
    actions = torch.rand(4, 16, 1, generator=gen) * 2 - 1
    rewards = torch.randn(4, 16, generator=gen)
    losses = {}
    for name, agent in (("cpu", cpu), ("cuda", gpu)):
        device = agent.device
        batch = WindowBatch(obs.to(device), actions.to(device), rewards.to(device),
                            torch.zeros(4, 16, device=device), torch.zeros(4, 16, device=device))
        total, parts = agent.updater.world_model_loss(batch, update_stats=False)
        losses[name] = {"total": total.item(), **{k: v.item() for k, v in parts.items()}}
    for key, value in losses["cpu"].items():
        assert losses["cuda"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("bf16", [False, True])
def test_extraction_and_bf16_run_on_the_gpu(bf16: bool) -> None:
    rng = np.random.default_rng(0)
    data = datasets.OfflineDataset.from_episodes(
        [{"observations": rng.standard_normal((41, 3)), "actions": rng.uniform(-1, 1, (40, 1)),
          "rewards": rng.standard_normal(40)} for _ in range(3)],
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
    )
    agent = PWM("MlpPolicy", None, observation_space=data.observation_space, action_space=data.action_space,
                seed=0, use_bf16=bf16, **tiny_kwargs(device="cuda"))
    agent.pretrain_world_model(data, 5)
    actor = [p.detach().clone() for p in agent.policy.actor.parameters()]
    agent.extract_policy(data, 5)
    assert any(not torch.equal(a, b) for a, b in zip(actor, agent.policy.actor.parameters()))
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


def test_planning_on_the_gpu() -> None:
    policy = _pendulum_agent("cuda").policy
    cfg = MPPIConfig(iterations=2, num_samples=32, num_elites=8, num_policy_samples=4)
    planner = MPPIPlanner(policy.world_model, policy.actor, policy.critic, 0.99, cfg)
    obs = torch.zeros(3, 3, device=CUDA)
    for deterministic in (True, False):
        action = planner.plan(obs, deterministic=deterministic)
        assert action.device.type == "cuda" and action.shape == (3, 1)
        assert bool(((action >= -1) & (action <= 1)).all())


def test_shac_learns_on_a_gpu_simulator() -> None:
    agent = SHAC("MlpPolicy", "CartPoleSwingUp", num_envs=8, horizon=4, device="cuda", seed=0,
                 policy_kwargs=dict(actor_arch=[16], critic_arch=[16]))
    assert all(p.device.type == "cuda" for p in agent.policy.parameters())
    agent.learn(64)
    action, _ = agent.predict(np.zeros(5, np.float32), deterministic=True)
    assert action.shape == (1,) and np.isfinite(action).all()


def test_shac_follows_its_env_device() -> None:
    from pwm_agent.envs.diffsim import CartPoleSwingUp

    on_gpu = SHAC("MlpPolicy", CartPoleSwingUp(num_envs=4, device="cuda"), horizon=4, seed=0,
                  policy_kwargs=dict(actor_arch=[16], critic_arch=[16]))
    assert on_gpu.device.type == "cuda"
    on_gpu.learn(32)
    on_cpu = SHAC("MlpPolicy", CartPoleSwingUp(num_envs=4), horizon=4, seed=0)
    assert on_cpu.device.type == "cpu"
    with pytest.raises(ValueError, match="create the env with device='cuda"):
        SHAC("MlpPolicy", CartPoleSwingUp(num_envs=4), device="cuda")


def test_gymnasium_vector_env_on_the_gpu() -> None:
    env = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")
    agent = PWM("MlpPolicy", env, seed=0, **tiny_kwargs(device="cuda"))
    agent.learn(100)
    assert agent.num_timesteps >= 100


def _twin_updaters(**overrides: object) -> tuple[PWM, PWM]:
    """Two agents with the same weights on the GPU: CUDA graphs on and off."""
    graphed = _pendulum_agent("cuda", cuda_graphs=True, **overrides)
    eager = _pendulum_agent("cuda", cuda_graphs=False, **overrides)
    eager.policy.load_state_dict(graphed.policy.state_dict())
    return graphed, eager


def _close_parameters(a: torch.nn.Module, b: torch.nn.Module, atol: float) -> None:
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=atol, msg=name)


def test_cuda_graph_steps_equal_eager_steps() -> None:
    graphed, eager = _twin_updaters()
    gen = torch.Generator().manual_seed(1)
    batches = [WindowBatch(torch.randn(5, 16, 3, generator=gen), torch.rand(4, 16, 1, generator=gen) * 2 - 1,
                           torch.randn(4, 16, generator=gen), torch.zeros(4, 16), torch.zeros(4, 16))
               for _ in range(6)]
    for step, batch in enumerate(batches):  # 3 warm-up calls, 1 recording, 2 replays
        batch = WindowBatch(*(None if t is None else t.to(CUDA) for t in batch))
        metrics = [agent.updater.train_world_model(batch) for agent in (graphed, eager)]
        torch.testing.assert_close(metrics[0]["model_loss"], metrics[1]["model_loss"], rtol=1e-4, atol=1e-6)
        for agent in (graphed, eager):
            torch.manual_seed(step)
            imagination, _ = agent.updater.train_actor(batch.observations[0])
            torch.manual_seed(100 + step)
            agent.updater.train_critic(imagination)
    for key in ("world_model", "actor", "critic_targets", "critic"):
        assert graphed.updater.graphs[key].num_graphs == 1 and graphed.updater.graphs[key].failure is None, key
        assert eager.updater.graphs[key].num_graphs == 0
    # The same kernels on the same inputs (noise is drawn outside the graphs).
    _close_parameters(graphed.policy.world_model, eager.policy.world_model, 1e-6)
    _close_parameters(graphed.policy.critic, eager.policy.critic, 1e-6)
    _close_parameters(graphed.policy.actor, eager.policy.actor, 1e-6)


def test_cuda_graphs_learn_save_and_reload(tmp_path: Path) -> None:
    agent = _pendulum_agent("cuda", use_bf16=True)
    agent.learn(200)
    assert all(graph.num_graphs >= 1 and graph.failure is None for graph in agent.updater.graphs.values())
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())
    agent.save(tmp_path / "agent")
    loaded = PWM.load(tmp_path / "agent", env=agent.get_env())
    loaded.learn(60, reset_num_timesteps=False)
    assert loaded.num_timesteps == 260


def test_cuda_graphs_extract_a_bound_multitask_model(mt30_checkpoint: Path) -> None:
    agent = PWM.from_pretrained(mt30_checkpoint, task="pendulum-swingup", device="cuda", horizon=4, batch_size=16,
                                critic_minibatches=2, seed=0, policy_kwargs=dict(actor_arch=[32], critic_arch=[32]))
    data = datasets.load(Path(__file__).parent / "fixtures" / "tdmpc2_chunks" / "chunk-tensordict-0.15.3.pt",
                         task="pendulum-swingup")
    agent.extract_policy(data, 8)
    failures = {key: graph.failure for key, graph in agent.updater.graphs.items() if graph.failure}
    assert not failures, failures
    assert agent.updater.graphs["actor"].num_graphs == 1


@torch.no_grad()
def test_predict_replays_a_graph_of_the_live_weights() -> None:
    agent = _pendulum_agent("cuda")
    policy = agent.policy
    obs = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)

    def eager() -> np.ndarray:
        actions = policy.actor.mean_action(policy.world_model.encode(torch.from_numpy(obs).to(CUDA)))
        return policy.unscale_action(actions.cpu().numpy())

    for _ in range(5):  # warm-up, recording, replays
        np.testing.assert_allclose(agent.predict(obs, deterministic=True)[0], eager(), atol=1e-6)
    assert policy._act_graphs[True].num_graphs == 1
    policy.actor.mu[-1].bias.add_(0.3)  # an in-place update, as the optimiser makes
    np.testing.assert_allclose(agent.predict(obs, deterministic=True)[0], eager(), atol=1e-6)
    policy.to("cpu")
    policy.to(CUDA)  # new parameter memory: the graph is recorded again
    np.testing.assert_allclose(agent.predict(obs, deterministic=True)[0], eager(), atol=1e-6)
    single, _ = agent.predict(obs[0], deterministic=True)
    assert single.shape == (1,)
    sampled = np.stack([agent.predict(obs, deterministic=False)[0] for _ in range(6)])
    assert sampled.std(0).min() > 0 and np.abs(sampled).max() <= 2.0


def test_cuda_graphs_alternating_batch_sizes_equal_eager() -> None:
    """Each input shape has its own graph and gradient memory; the optimiser must step
    with the gradients of the step just taken, not another shape's."""
    graphed, eager = _twin_updaters()
    gen = torch.Generator().manual_seed(2)
    for step in range(12):  # both shapes warm up, record and replay, interleaved
        b = 16 if step % 2 else 24
        batch = WindowBatch(torch.randn(5, b, 3, generator=gen), torch.rand(4, b, 1, generator=gen) * 2 - 1,
                            torch.randn(4, b, generator=gen), torch.zeros(4, b), torch.zeros(4, b))
        batch = WindowBatch(*(None if t is None else t.to(CUDA) for t in batch))
        for agent in (graphed, eager):
            agent.updater.train_world_model(batch)
            torch.manual_seed(step)
            imagination, _ = agent.updater.train_actor(batch.observations[0])
            torch.manual_seed(100 + step)
            agent.updater.train_critic(imagination)
    assert graphed.updater.graphs["world_model"].num_graphs == 2
    _close_parameters(graphed.policy.world_model, eager.policy.world_model, 1e-6)
    _close_parameters(graphed.policy.critic, eager.policy.critic, 1e-6)
    _close_parameters(graphed.policy.actor, eager.policy.actor, 1e-6)


def _step_failing_its_first_recordings(failures: int, attempts: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    def step(t: torch.Tensor) -> torch.Tensor:
        if torch.cuda.is_current_stream_capturing():
            attempts.append(1)
            if len(attempts) <= failures:
                torch.cuda.synchronize()  # forbidden while recording: this recording fails
        return t + 1

    return step


def test_a_failed_recording_is_tried_again() -> None:
    attempts: list[int] = []
    graph = StepGraph(_step_failing_its_first_recordings(1, attempts), "flaky")
    x = torch.arange(8.0, device=CUDA)
    outs = [graph(x).clone() for _ in range(12)]
    assert len(attempts) == 2 and graph.num_graphs == 1 and graph.failure is None
    assert len(graph.recording_errors) == 1 and "capturing" in graph.recording_errors[0]
    for out in outs:  # every call, failed recording included, was a real step
        torch.testing.assert_close(out, x + 1)


def test_recording_gives_up_after_its_retries() -> None:
    attempts: list[int] = []
    graph = StepGraph(_step_failing_its_first_recordings(99, attempts), "broken", retries=1)
    x = torch.arange(8.0, device=CUDA)
    with pytest.warns(RuntimeWarning, match="broken step .* 2 tries"):
        outs = [graph(x).clone() for _ in range(12)]
    assert len(attempts) == 2 and graph.num_graphs == 0 and not graph.active
    for out in outs:
        torch.testing.assert_close(out, x + 1)


def test_compile_updates_on_the_gpu_warns_that_it_does_nothing() -> None:
    with pytest.warns(UserWarning, match="compile_updates=True only compiles updates on a CPU"):
        agent = _pendulum_agent("cuda", compile_updates=True)
    agent.learn(80)
    assert agent.updater._compiled == {}
