"""PWM.from_pretrained: a single-task agent on a TD-MPC2 multi-task world model."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from pwm_agent import PWM, datasets, load_world_model
from pwm_agent.checkpoints import CheckpointError

FIXTURES = Path(__file__).parent / "fixtures"
CHUNK = FIXTURES / "tdmpc2_chunks" / "chunk-tensordict-0.15.3.pt"
SMALL = dict(horizon=4, batch_size=16, critic_minibatches=2, learning_starts=50, seed=0, device="cpu",
             policy_kwargs=dict(actor_arch=[32], critic_arch=[32]))


@torch.no_grad()
def test_known_task_binds_id_and_dims(tmp_path: Path, mt30_checkpoint: Path) -> None:
    agent = PWM.from_pretrained(mt30_checkpoint, task="pendulum-swingup", **SMALL)
    assert agent.observation_space.shape == (3,) and agent.action_space.shape == (1,)
    wm = agent.policy.world_model
    assert wm.bound_task == 7 and (wm.obs_dim, wm.action_dim) == (24, 6)
    reference = load_world_model(mt30_checkpoint)
    obs, action = torch.randn(5, 3), torch.rand(5, 1) * 2 - 1
    task = torch.full((5,), 7)
    z = reference.encode(torch.nn.functional.pad(obs, (0, 21)), task)
    torch.testing.assert_close(wm.encode(obs), z)
    padded = torch.nn.functional.pad(action, (0, 5))
    torch.testing.assert_close(wm.next(z, action), reference.next(z, padded, task))
    torch.testing.assert_close(wm.reward(z, action), reference.reward(z, padded, task))
    action_out, _ = agent.predict(np.zeros(3, np.float32), deterministic=True)
    assert action_out.shape == (1,)
    assert agent.learning_rate == 1e-4  # the extraction default; a caller's value wins
    assert PWM.from_pretrained(mt30_checkpoint, task=7, learning_rate=3e-4, **SMALL).learning_rate == 3e-4
    agent.save(tmp_path / "agent")
    loaded = PWM.load(tmp_path / "agent")
    assert loaded.policy.world_model.bound_task == 7 and loaded.learning_rate == 1e-4
    batch = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(batch, deterministic=True)[0], agent.predict(batch, deterministic=True)[0])


def test_extract_from_tdmpc2_data_and_frozen_learning(mt30_checkpoint: Path) -> None:
    agent = PWM.from_pretrained(mt30_checkpoint, task="pendulum-swingup", **SMALL)
    data = datasets.load(CHUNK, task="pendulum-swingup")
    before = [p.detach().clone() for p in agent.policy.world_model.parameters()]
    actor = [p.detach().clone() for p in agent.policy.actor.parameters()]
    agent.extract_policy(data, 5)
    assert any(not torch.equal(a, b) for a, b in zip(actor, agent.policy.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, agent.policy.world_model.parameters()))
    walker = datasets.load_tdmpc2(CHUNK, task="walker-run")
    with pytest.raises(Exception, match="task 2, but the agent is bound to task 7|agent expects"):
        agent.extract_policy(walker, 1)


def test_new_task_gets_an_embedding_row(mt30_checkpoint: Path) -> None:
    reference = load_world_model(mt30_checkpoint)
    rows = reference.task_emb.weight.detach()
    agent = PWM.from_pretrained(mt30_checkpoint, task="my-pendulum", env="Pendulum-v1", task_init="pendulum-swingup",
                                freeze_world_model=False, **SMALL)
    wm = agent.policy.world_model
    assert wm.config.num_tasks == 31 and wm.bound_task == 30
    torch.testing.assert_close(wm.task_emb.weight[30], rows[7])
    assert wm.action_masks[30].tolist() == [1, 0, 0, 0, 0, 0]
    before = [p.detach().clone() for p in wm.parameters()]
    agent.learn(80)  # fine-tuned: the world model trains on the new task's data
    assert any(not torch.equal(a, b) for a, b in zip(before, wm.parameters()))
    mean = PWM.from_pretrained(mt30_checkpoint, task="other", env=gym.make("Pendulum-v1"), **SMALL)
    torch.testing.assert_close(mean.policy.world_model.task_emb.weight[30], rows.mean(0))


def test_bad_tasks_and_envs_are_named(mt30_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="not in the checkpoint's task set. Did you mean 'cheetah-run'.*For a new task"):
        PWM.from_pretrained(mt30_checkpoint, task="cheetah-sprint")
    with pytest.raises(ValueError, match="did you mean 'pendulum-swingup'"):
        PWM.from_pretrained(mt30_checkpoint, task="Pendulum_Swingup", env="Pendulum-v1")
    with pytest.warns(UserWarning, match="trained as a new task.*Did you mean 'pendulum-swingup'"):
        typo = PWM.from_pretrained(mt30_checkpoint, task="pendulum-swingupp", env="Pendulum-v1", **SMALL)
    assert typo.policy.world_model.bound_task == 30
    with pytest.raises(ValueError, match="has \\(3, 1\\).*pass the env of that task"):
        PWM.from_pretrained(mt30_checkpoint, task="pendulum-swingup", env="MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="exceed the model's padded \\(24, 6\\)"):
        PWM.from_pretrained(mt30_checkpoint, task="ant", env="Ant-v5")
    with pytest.raises(ValueError, match="outside the checkpoint's 0..29"):
        PWM.from_pretrained(mt30_checkpoint, task=30)
    with pytest.raises(ValueError, match="Unknown task .nonsense."):
        PWM.from_pretrained(mt30_checkpoint, task="x", env="Pendulum-v1", task_init="nonsense")


def test_single_task_checkpoint_has_no_task_to_pick(mt30_checkpoint: Path, tmp_path: Path) -> None:
    blob = torch.load(mt30_checkpoint, map_location="cpu", weights_only=True)
    # a single-task model: no task embeddings, action masks or task table
    single = {"model": {k: v for k, v in blob["model"].items() if "_task_emb" not in k and "_action_masks" not in k}}
    torch.save(single, tmp_path / "single.pt")
    with pytest.raises(CheckpointError, match="single-task checkpoint.*load_world_model"):
        PWM.from_pretrained(tmp_path / "single.pt", task="pendulum-swingup", env="Pendulum-v1")


def test_multitask_pretraining_export_and_per_task_agents(tmp_path: Path) -> None:
    """Two tasks of different obs dims: padded data, one multi-task world model, saved in
    TD-MPC2's layout, then a per-task agent extracts a policy for one of them."""
    from gymnasium import spaces

    from pwm_agent.checkpoints import load_checkpoint, save_world_model
    from pwm_agent.envs.task_sets import TaskSpec

    pendulum = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0)
    data = datasets.concatenate([
        datasets.collect(pendulum, "random", 300, seed=0).with_task(0),
        datasets.collect("MountainCarContinuous-v0", "random", 300, seed=0).with_task(1),
    ], pad=True)
    assert data.observation_dim == 3 and set(data.tasks.tolist()) == {0, 1}
    world_model = dict(latent_dim=16, enc_dims=[32], mlp_dims=[32, 32], reward_head="twohot", num_bins=21,
                       termination_head=False, num_tasks=2, task_dim=8)
    agent = PWM("MlpPolicy", None, observation_space=spaces.Box(-np.inf, np.inf, (3,), np.float32),
                action_space=spaces.Box(-1.0, 1.0, (1,), np.float32), seed=0, horizon=4, batch_size=16,
                policy_kwargs=dict(world_model=world_model, action_dims=[1, 1]), device="cpu")
    val = agent.pretrain_world_model(data, 20, eval_freq=10, validation_fraction=0.3)
    assert np.isfinite(val["loss"])
    batch = data.sample_windows(8, 4, np.random.default_rng(0))
    assert batch.tasks is not None and set(batch.tasks.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="bound to none"):
        agent.extract_policy(data, 1)
    specs = [TaskSpec("pendulum", 3, 1, 200), TaskSpec("mountain-car", 2, 1, 999)]
    path = save_world_model(agent.policy.world_model, tmp_path / "mt2.pt", specs)
    ckpt = load_checkpoint(path)
    assert ckpt.tasks == tuple(specs) and ckpt.layout == "current" and ckpt.policy_prior is None
    obs, task = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(ckpt.world_model.encode(obs, task), agent.policy.world_model.encode(obs, task))
    car = PWM.from_pretrained(path, task="mountain-car", env="MountainCarContinuous-v0", **SMALL)
    assert car.observation_space.shape == (2,) and car.policy.world_model.bound_task == 1
    car_data = datasets.collect("MountainCarContinuous-v0", "random", 200, seed=1).with_task(1)
    car.extract_policy(car_data, 3)
    assert car.predict(np.zeros(2, np.float32))[0].shape == (1,)


def test_fine_tuning_a_frozen_pretrained_agent_trains_the_world_model(mt30_checkpoint: Path) -> None:
    agent = PWM.from_pretrained(mt30_checkpoint, task="pendulum-swingup", **SMALL)
    assert agent.update_config.model_iterations == 0
    data = datasets.load(CHUNK, task="pendulum-swingup")
    before = [p.detach().clone() for p in agent.policy.world_model.parameters()]
    agent.extract_policy(data, 2, fine_tune_world_model=True)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.world_model.parameters()))
    assert agent.policy.world_model.bound_task == PWM.from_pretrained(mt30_checkpoint, task=np.int64(7), **SMALL).policy.world_model.bound_task


def test_termination_head_survives_the_tdmpc2_layout(tmp_path: Path) -> None:
    from pwm_agent.checkpoints import load_checkpoint, save_world_model
    from pwm_agent.world_model import WorldModel, WorldModelConfig

    config = WorldModelConfig(latent_dim=16, enc_dims=(32,), mlp_dims=(32, 32), reward_head="twohot", num_bins=11,
                              num_tasks=2, task_dim=4)
    wm = WorldModel(5, 2, config, action_dims=[2, 1])
    loaded = load_checkpoint(save_world_model(wm, tmp_path / "t.pt")).world_model
    z, task = torch.rand(3, 16), torch.tensor([0, 1, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded.continuation(z, task), wm.continuation(z, task))
    assert loaded.config.termination_head


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoint_loads_as_float32(tmp_path: Path, dtype: torch.dtype) -> None:
    """Weights stored in 16 bits halve the file; the loaded model is float32 and close."""
    from pwm_agent.checkpoints import load_checkpoint, save_world_model
    from pwm_agent.world_model import WorldModel, WorldModelConfig

    config = WorldModelConfig(latent_dim=64, enc_dims=(128,), mlp_dims=(128, 128), reward_head="twohot",
                              num_tasks=2, task_dim=8)
    wm = WorldModel(7, 3, config, action_dims=[3, 2])
    full = save_world_model(wm, tmp_path / "full.pt")
    half = save_world_model(wm, tmp_path / "half.pt", dtype=dtype)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    stored = torch.load(half, weights_only=True)["model"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {dtype}
    loaded = load_checkpoint(half).world_model
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    obs, task = torch.randn(32, 7), torch.tensor([0, 1] * 16)
    with torch.no_grad():
        z, z_half = wm.encode(obs, task), loaded.encode(obs, task)
        rel = 1e-2 if dtype == torch.bfloat16 else 2e-3
        torch.testing.assert_close(z_half, z, atol=rel * 10, rtol=0)
        assert (z_half - z).abs().max() > 0  # really stored at lower precision
    with pytest.raises(ValueError, match="torch.float16"):
        save_world_model(wm, tmp_path / "bad.pt", dtype=torch.int8)
