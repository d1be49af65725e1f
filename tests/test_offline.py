"""Offline training: world-model pretraining, policy extraction, resume and online continuation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback

from conftest import recording_logger
from pwm_agent import PWM, datasets
from pwm_agent.datasets import DatasetError
from pwm_agent.pwm import OfflineCheckpointCallback


@pytest.fixture(scope="module")
def pendulum_data() -> datasets.OfflineDataset:
    return datasets.collect("Pendulum-v1", "random", 1200, seed=0)


def _agent(data: datasets.OfflineDataset, tiny: dict[str, Any], **kwargs: Any) -> PWM:
    return PWM(
        "MlpPolicy", None, observation_space=data.observation_space, action_space=data.action_space,
        seed=0, **{**tiny, **kwargs},
    )


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_pretrain_trains_only_the_world_model(pendulum_data: datasets.OfflineDataset, tiny: dict) -> None:
    agent = _agent(pendulum_data, tiny, log_every=50)
    logger, writer = recording_logger()
    agent.set_logger(logger)
    policy = agent.policy
    wm, actor, critic = _snapshot(policy.world_model), _snapshot(policy.actor), _snapshot(policy.critic)
    first = agent.pretrain_world_model(pendulum_data, 10, eval_freq=10)
    last = agent.pretrain_world_model(pendulum_data, 300, eval_freq=300)
    assert _changed(wm, policy.world_model)
    assert not _changed(actor, policy.actor) and not _changed(critic, policy.critic)
    assert last["loss"] < first["loss"], (first, last)
    assert writer.values("pretrain/model_loss") and writer.values("pretrain/val_loss")
    assert agent._n_offline_updates == 310


def test_extract_policy_keeps_world_model_frozen(pendulum_data: datasets.OfflineDataset, tiny: dict) -> None:
    agent = _agent(pendulum_data, tiny)
    agent.pretrain_world_model(pendulum_data, 20)
    policy = agent.policy
    wm, actor, critic = _snapshot(policy.world_model), _snapshot(policy.actor), _snapshot(policy.critic)
    logger, writer = recording_logger()
    agent.set_logger(logger)
    evaluation = agent.extract_policy(pendulum_data, 20, eval_env="Pendulum-v1", eval_freq=10, n_eval_episodes=1)
    # the extraction's learning rate is logged with its own metrics, decaying over the call
    rates = writer.values("extract/learning_rate")
    assert rates and rates[-1] == pytest.approx(agent.lr_schedule(1.0 - 19 / 20))
    assert not writer.values("train/learning_rate")
    assert not _changed(wm, policy.world_model)
    assert _changed(actor, policy.actor) and _changed(critic, policy.critic)
    assert evaluation is not None and evaluation.steps == [10, 20] and len(evaluation.results) == 2
    assert np.isfinite(evaluation.last_mean_reward)
    agent.extract_policy(pendulum_data, 5, fine_tune_world_model=True)
    assert _changed(wm, policy.world_model)


class _LaterEpisodesScoreLower(gym.Wrapper):
    """Pendulum whose every later episode scores 1000 lower, so the first evaluation is the best."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.episodes = 0

    def reset(self, **kwargs: Any) -> Any:
        self.episodes += 1
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) - 1000.0 * self.episodes, terminated, truncated, info


class _Snapshots(BaseCallback):
    """The actor's weights before training and after each gradient step (as trained, never averaged)."""

    def __init__(self) -> None:
        super().__init__()
        self.actor: dict[int, list[torch.Tensor]] = {}

    def _on_training_start(self) -> None:
        self.actor[0] = _snapshot(self.model.policy.actor)

    def _on_step(self) -> bool:
        self.actor[self.n_calls] = _snapshot(self.model.policy.actor)
        return True


def test_extract_policy_keep_best_restores_the_best_evaluated_weights(
    pendulum_data: datasets.OfflineDataset, tiny: dict
) -> None:
    agent = _agent(pendulum_data, tiny)
    agent.pretrain_world_model(pendulum_data, 20)
    wm, snapshots = _snapshot(agent.policy.world_model), _Snapshots()
    eval_env = _LaterEpisodesScoreLower(gym.make("Pendulum-v1", max_episode_steps=20))
    evaluation = agent.extract_policy(pendulum_data, 25, eval_env=eval_env, eval_freq=10, n_eval_episodes=1,
                                      keep_best=True, callback=snapshots)
    assert evaluation is not None and evaluation.steps == [10, 20, 25]  # evaluated again after the last step
    assert evaluation.best_step == 10 and evaluation.best_mean_reward == max(map(np.mean, evaluation.results))
    assert not _changed(snapshots.actor[10], agent.policy.actor)
    assert _changed(snapshots.actor[25], agent.policy.actor)
    assert not _changed(wm, agent.policy.world_model)
    with pytest.raises(ValueError, match="pass eval_env"):
        agent.extract_policy(pendulum_data, 1, keep_best=True)


class _RecordsActor(gym.Wrapper):
    """Records the actor's weights each time an evaluation episode starts."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actor: torch.nn.Module | None = None
        self.seen: list[list[torch.Tensor]] = []

    def reset(self, **kwargs: Any) -> Any:
        assert self.actor is not None
        self.seen.append(_snapshot(self.actor))
        return self.env.reset(**kwargs)


def test_extract_policy_actor_ema_evaluates_and_keeps_the_average(
    pendulum_data: datasets.OfflineDataset, tiny: dict
) -> None:
    decay = 0.8

    def run(eval_env: gym.Env | None, keep_best: bool = False) -> tuple[PWM, _Snapshots]:
        agent = _agent(pendulum_data, tiny)
        agent.pretrain_world_model(pendulum_data, 20)
        for wrapper in (eval_env, getattr(eval_env, "env", None)):
            if isinstance(wrapper, _RecordsActor):
                wrapper.actor = agent.policy.actor
        snapshots = _Snapshots()
        agent.extract_policy(pendulum_data, 20, eval_env=eval_env, eval_freq=10, n_eval_episodes=1,
                             actor_ema_decay=decay, callback=snapshots, keep_best=keep_best)
        return agent, snapshots

    def averages(snapshots: _Snapshots) -> dict[int, list[torch.Tensor]]:
        out = {0: snapshots.actor[0]}
        for t in range(1, 21):
            d = min(decay, (1 + t) / (10 + t))
            out[t] = [d * a + (1 - d) * w for a, w in zip(out[t - 1], snapshots.actor[t])]
        return out

    def same(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)

    recorder = _RecordsActor(gym.make("Pendulum-v1", max_episode_steps=20))
    agent, snapshots = run(recorder)
    expected = averages(snapshots)
    same(_snapshot(agent.policy.actor), expected[20])  # the agent ends with the average
    assert _changed(snapshots.actor[20], agent.policy.actor)
    same(recorder.seen[0], expected[10])  # and evaluations ran on it (first and last reset)
    same(recorder.seen[-1], expected[20])
    # Evaluating on the average put the trained weights back: training went on as without evaluations.
    _, unevaluated = run(None)
    assert all(torch.equal(a, b) for a, b in zip(snapshots.actor[20], unevaluated.actor[20]))
    # keep_best evaluates and keeps the average: step 10's here (later episodes score lower).
    best, snapshots = run(_LaterEpisodesScoreLower(_RecordsActor(gym.make("Pendulum-v1", max_episode_steps=20))),
                          keep_best=True)
    same(_snapshot(best.policy.actor), averages(snapshots)[10])
    with pytest.raises(ValueError, match="actor_ema_decay must be in"):
        agent.extract_policy(pendulum_data, 1, actor_ema_decay=1.0)


def test_callback_stops_and_checkpoints_resume(pendulum_data: datasets.OfflineDataset, tiny: dict, tmp_path: Path) -> None:
    class StopAt(BaseCallback):
        def _on_step(self) -> bool:
            return self.n_calls < 7

    agent = _agent(pendulum_data, tiny)
    agent.pretrain_world_model(pendulum_data, 100, callback=StopAt(), validation_fraction=0)
    assert agent._n_offline_updates == 7
    agent.pretrain_world_model(pendulum_data, 8, checkpoint_freq=4, checkpoint_path=str(tmp_path))
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == ["pwm_pretrain_11_steps.zip", "pwm_pretrain_15_steps.zip"]
    resumed = PWM.load(tmp_path / "pwm_pretrain_15_steps.zip")
    assert resumed._n_offline_updates == 15
    for a, b in zip(agent.policy.world_model.parameters(), resumed.policy.world_model.parameters()):
        torch.testing.assert_close(a, b)
    resumed.pretrain_world_model(pendulum_data, 3)  # optimiser state restored: continues
    assert resumed._n_offline_updates == 18


def test_offline_checkpoint_callback_names_files_by_gradient_steps(
    pendulum_data: datasets.OfflineDataset, tiny: dict, tmp_path: Path
) -> None:
    agent = _agent(pendulum_data, tiny)
    agent.pretrain_world_model(pendulum_data, 4, validation_fraction=0)
    agent.extract_policy(pendulum_data, 6, callback=OfflineCheckpointCallback(3, str(tmp_path), verbose=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl_model_10_updates.zip", "rl_model_7_updates.zip"]
    assert PWM.load(tmp_path / "rl_model_10_updates.zip")._n_offline_updates == 10
    sb3_callback = CheckpointCallback(5, str(tmp_path / "sb3"))
    for sb3_checkpoints in (sb3_callback, CallbackList([CheckpointCallback(5, str(tmp_path / "sb3"))])):
        with pytest.warns(UserWarning, match="OfflineCheckpointCallback"):
            agent.extract_policy(pendulum_data, 1, callback=sb3_checkpoints)


def test_offline_then_online(pendulum_data: datasets.OfflineDataset, tiny: dict) -> None:
    agent = _agent(pendulum_data, tiny)
    agent.pretrain_world_model(pendulum_data, 10)
    weights = _snapshot(agent.policy.world_model)
    with pytest.raises(ValueError, match="set_env"):
        agent.learn(10)
    agent.set_env(gym.make("Pendulum-v1"))  # SB3 wraps it; spaces must match
    agent.learn(80)
    assert agent.num_timesteps == 80 and _changed(weights, agent.policy.world_model)


def test_data_that_does_not_fit(pendulum_data: datasets.OfflineDataset, tiny: dict) -> None:
    agent = PWM("MlpPolicy", "MountainCarContinuous-v0", **tiny)
    with pytest.raises(DatasetError, match="agent expects 2 and 1"):
        agent.pretrain_world_model(pendulum_data, 1)
    with pytest.raises(TypeError, match="OfflineDataset"):
        agent.extract_policy({"observations": []}, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both observation_space and action_space"):
        PWM("MlpPolicy", None, observation_space=pendulum_data.observation_space)
    with pytest.raises(ValueError, match="Discrete"):
        PWM("MlpPolicy", None, observation_space=pendulum_data.observation_space, action_space=spaces.Discrete(3))
    short = datasets.collect("Pendulum-v1", "random", 3, seed=0)
    with pytest.raises(ValueError, match="shorter horizon"):
        _agent(short, tiny).pretrain_world_model(short, 1)
