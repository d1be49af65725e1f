"""`datasets.from_replay_buffer`: an agent's learning history as an offline dataset."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

from pwm_agent import PWM, datasets

from conftest import tiny_kwargs


def pendulum_reward(obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Pendulum-v1's reward from the observation before the step and the torque."""
    theta = np.arctan2(obs[:, 1], obs[:, 0])
    return -(theta**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * np.clip(action[:, 0], -2, 2) ** 2)


def test_pendulum_history_two_envs_and_two_learn_calls() -> None:
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    agent = PWM("MlpPolicy", env, seed=0, **tiny_kwargs(learning_starts=380))
    agent.learn(450)
    agent.learn(60)  # resets the envs: every env's episode is cut
    agent.learn(40, reset_num_timesteps=False)  # goes on with the same episodes
    data = datasets.from_replay_buffer(agent)
    assert data.num_transitions == agent.replay_buffer.pos * 2 == 550
    assert data.observation_space == agent.observation_space  # Pendulum's bounds kept
    # Per env: one full episode (200 steps), its rest up to the cut (25), then 30 + 20 more.
    assert sorted(data.episode_lengths.tolist()) == [25, 25, 50, 50, 200, 200]
    assert not data.terminations.any()
    ends = np.cumsum(data.episode_lengths) - 1
    assert data.truncations[ends].all() and data.truncations.sum() == 6
    # Actions are back in the env's units ([-2, 2], stored by SB3 in [-1, 1]) and line up with
    # the observation they were taken in and the reward they earned.
    assert np.abs(data.actions).max() > 1.0 and np.abs(data.actions).max() <= 2.0
    starts = np.concatenate([[0], np.cumsum(data.episode_lengths + 1)[:-1]])
    before = np.concatenate([data.observations[s : s + n] for s, n in zip(starts, data.episode_lengths)])
    np.testing.assert_allclose(data.rewards, pendulum_reward(before, data.actions), rtol=1e-4, atol=1e-4)
    # Inside an episode an observation follows from the previous one (Pendulum's max speed is 8).
    assert np.abs(np.diff(data.observations[starts[0] : starts[0] + 201, 2])).max() < 2.0


def test_terminations_wraparound_and_bad_input() -> None:
    pytest.importorskip("mujoco")
    agent = PWM("MlpPolicy", "InvertedPendulum-v5", seed=0, **tiny_kwargs(learning_starts=300, buffer_size=120))
    agent.learn(300)  # random actions: many short episodes, the buffer wraps around
    data = datasets.from_replay_buffer(agent)
    assert data.num_transitions == 120
    ends = np.cumsum(data.episode_lengths) - 1
    last_obs = data.observations[np.cumsum(data.episode_lengths + 1) - 1]
    # InvertedPendulum terminates when the pole angle (obs[1]) leaves [-0.2, 0.2].
    terminated = data.terminations[ends]
    assert terminated.sum() >= 5
    assert (np.abs(last_obs[terminated, 1]) > 0.2).all()
    assert (np.abs(last_obs[~terminated, 1]) <= 0.2).all()
    assert data.truncations[ends[~terminated]].all()  # the newest piece, cut by the write head
    # v5's reward is 1 per step the pole stays up, 0 on the step that terminates.
    np.testing.assert_array_equal(data.rewards, (~data.terminations).astype(np.float32))
    fresh = PWM("MlpPolicy", "InvertedPendulum-v5", seed=0, **tiny_kwargs(learning_starts=300))
    with pytest.raises(ValueError, match="train the agent"):
        datasets.from_replay_buffer(fresh)
    with pytest.raises(TypeError, match="PWM agent or a SequenceReplayBuffer"):
        datasets.from_replay_buffer(object())
    bare = datasets.from_replay_buffer(agent.replay_buffer)  # SB3 buffers know their action space
    np.testing.assert_array_equal(bare.actions, data.actions)
