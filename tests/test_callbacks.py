"""SB3 callbacks, progress bar and evaluate_policy with PWM."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from pwm_agent import PWM

from conftest import tiny_kwargs


def short_pendulum(steps: int = 20) -> gym.Env:
    return Monitor(gym.make("Pendulum-v1", max_episode_steps=steps))


class CountingCallback(BaseCallback):
    """Counts every hook and checks what SB3 hands to ``_on_step``."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.counts = {"training_start": 0, "rollout_start": 0, "step": 0, "rollout_end": 0, "training_end": 0}
        self.stop_at = stop_at
        self.rewards: list[float] = []

    def _on_training_start(self) -> None:
        self.counts["training_start"] += 1
        assert isinstance(self.model, PWM)

    def _on_rollout_start(self) -> None:
        self.counts["rollout_start"] += 1

    def _on_step(self) -> bool:
        self.counts["step"] += 1
        assert self.locals["new_obs"].shape == (self.training_env.num_envs, 3)
        self.rewards.extend(np.asarray(self.locals["rewards"]).tolist())
        return self.stop_at is None or self.n_calls < self.stop_at

    def _on_rollout_end(self) -> None:
        self.counts["rollout_end"] += 1

    def _on_training_end(self) -> None:
        self.counts["training_end"] += 1


def test_custom_callback_counts_calls():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    callback = CountingCallback()
    model.learn(80, callback=callback)
    counts = callback.counts
    assert counts["training_start"] == 1 and counts["training_end"] == 1
    assert counts["step"] == callback.n_calls == 80
    # train_freq=1: one rollout of one step per env step.
    assert counts["rollout_start"] == counts["rollout_end"] == 80
    assert len(callback.rewards) == 80
    np.testing.assert_allclose(callback.rewards, model.replay_buffer.rewards[:80, 0])


def test_callback_returning_false_stops_training():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    callback = CountingCallback(stop_at=60)
    model.learn(500, callback=callback)
    assert model.num_timesteps == 60
    assert callback.counts["training_end"] == 1
    # The step on which the callback stopped training was not trained on.
    assert model._n_updates == 9


def test_eval_callback(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    eval_env = short_pendulum(10)
    callback = EvalCallback(
        eval_env,
        n_eval_episodes=2,
        eval_freq=40,
        log_path=str(tmp_path / "logs"),
        best_model_save_path=str(tmp_path / "best"),
        deterministic=True,
        verbose=0,
    )
    model.learn(100, callback=callback)
    assert list(callback.evaluations_timesteps) == [40, 80]
    results = np.load(tmp_path / "logs" / "evaluations.npz")
    assert results["results"].shape == (2, 2)
    np.testing.assert_array_equal(results["ep_lengths"], 10)
    assert np.all(results["results"] <= 0.0)  # Pendulum rewards are negative
    assert np.isfinite(callback.last_mean_reward)
    assert callback.best_mean_reward == pytest.approx(results["results"].mean(axis=1).max())
    best = PWM.load(tmp_path / "best" / "best_model.zip")
    assert best.num_timesteps in (40, 80)
    assert best.predict(np.zeros(3, np.float32), deterministic=True)[0].shape == (1,)


def test_stop_training_on_reward_threshold():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1e9, verbose=0)
    callback = EvalCallback(short_pendulum(5), callback_on_new_best=stop, n_eval_episodes=1, eval_freq=60, verbose=0)
    total = 400
    model.learn(total, callback=callback)
    assert model.num_timesteps == 60 < total
    assert callback.best_mean_reward > -1e9


def test_callback_list_and_max_episodes(tmp_path):
    env = make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=25), n_envs=2, seed=0)
    model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs())
    counter = CountingCallback()
    checkpoint = CheckpointCallback(save_freq=20, save_path=str(tmp_path), name_prefix="ckpt")
    max_episodes = StopTrainingOnMaxEpisodes(max_episodes=2)  # per env: 2 * 25 steps each
    model.learn(1000, callback=CallbackList([counter, checkpoint, max_episodes]))
    assert model.num_timesteps == 100
    assert counter.counts["step"] == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_40_steps.zip", "ckpt_80_steps.zip"]
    assert PWM.load(tmp_path / "ckpt_80_steps.zip").num_timesteps == 80


def test_progress_bar():
    pytest.importorskip("tqdm")
    pytest.importorskip("rich")
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(60, progress_bar=True)
    assert model.num_timesteps == 60
    assert model._n_updates == 10


def test_evaluate_policy():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(60)
    env = short_pendulum(15)
    mean, std = evaluate_policy(model, env, n_eval_episodes=3, deterministic=True)
    assert np.isfinite(mean) and np.isfinite(std) and mean < 0.0
    rewards, lengths = evaluate_policy(model, env, n_eval_episodes=3, return_episode_rewards=True)
    assert len(rewards) == 3 and lengths == [15, 15, 15]
    # Works on a vectorised env too.
    venv = make_vec_env(lambda: gym.make("Pendulum-v1", max_episode_steps=15), n_envs=2, seed=0)
    rewards, lengths = evaluate_policy(model, venv, n_eval_episodes=4, return_episode_rewards=True)
    assert len(rewards) == 4 and set(lengths) == {15}
