"""MT30 dm_control tasks as Gymnasium envs: dims and episode lengths of the task table."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pwm_agent  # noqa: F401  (registers the pwm_agent/<task> envs)
from pwm_agent import PWM
from pwm_agent.envs.task_sets import MT30

pytest.importorskip("dm_control")


@pytest.mark.parametrize("spec", MT30, ids=[s.name for s in MT30])
def test_dims_match_the_task_table(spec) -> None:
    env = gym.make(f"pwm_agent/{spec.name}")
    assert env.spec is not None and env.spec.max_episode_steps == spec.episode_length == 500
    obs, _ = env.reset(seed=0)
    assert obs.shape == (spec.obs_dim,) and obs.dtype == np.float32
    assert env.action_space.shape == (spec.action_dim,)
    assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (spec.obs_dim,) and 0.0 <= reward <= 2.0 and not terminated and not truncated


def test_seeded_resets_repeat_and_episodes_truncate_at_500() -> None:
    env = gym.make("pwm_agent/cartpole-swingup")
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        assert not terminated
        steps += 1
    assert steps == 500


def _reward_at_speed(task: str, speed: float) -> float:
    from pwm_agent.envs.dmc_tasks import make_dm_env

    dm_env = make_dm_env(task, np.random.RandomState(0))
    dm_env.reset()
    physics = dm_env.physics
    with physics.reset_context():
        physics.named.data.qvel["rootx"] = speed  # the root's forward (x) velocity
    return float(dm_env.task.get_reward(physics))


def test_cheetah_backwards_rewards_the_opposite_direction() -> None:
    assert _reward_at_speed("cheetah-run", 12.0) == pytest.approx(1.0)
    assert _reward_at_speed("cheetah-run", -12.0) == pytest.approx(0.0)
    assert _reward_at_speed("cheetah-run-backwards", -12.0) == pytest.approx(1.0)
    assert _reward_at_speed("cheetah-run-backwards", 12.0) == pytest.approx(0.0)


@pytest.mark.parametrize("forward, backward", [("walker-run", "walker-run-backwards"),
                                               ("walker-walk", "walker-walk-backwards"),
                                               ("hopper-hop", "hopper-hop-backwards")])
def test_backwards_tasks_prefer_moving_backwards(forward: str, backward: str) -> None:
    """Same pose, opposite root velocities: each task prefers its own direction."""
    assert _reward_at_speed(forward, 8.0) > _reward_at_speed(forward, -8.0)
    assert _reward_at_speed(backward, -8.0) > _reward_at_speed(backward, 8.0)
    assert _reward_at_speed(backward, -8.0) == pytest.approx(_reward_at_speed(forward, 8.0))


def test_pendulum_spin_rewards_spinning() -> None:
    env = gym.make("pwm_agent/pendulum-spin")

    def episode(policy) -> float:
        obs, _ = env.reset(seed=0)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total, done = total + reward, terminated or truncated
        return total

    pumping = episode(lambda obs: np.sign(obs[-1:]).astype(np.float32))  # torque along the velocity
    idle = episode(lambda obs: np.zeros(1, np.float32))
    assert pumping > 500 and idle < 50


def test_pwm_trains_on_an_mt30_env(tiny: dict) -> None:
    agent = PWM("MlpPolicy", "pwm_agent/reacher-three-easy", seed=0, **tiny)
    agent.learn(80)
    assert agent.predict(np.zeros(8, np.float32))[0].shape == (3,)


def test_unseeded_envs_start_differently_and_seeded_ones_repeat() -> None:
    a, b = gym.make("pwm_agent/cartpole-swingup"), gym.make("pwm_agent/cartpole-swingup")
    first_a, first_b = a.reset()[0], b.reset()[0]
    assert not np.array_equal(first_a, first_b), "unseeded instances must not share initial states"
    np.testing.assert_array_equal(a.reset(seed=7)[0], b.reset(seed=7)[0])
    after_a, after_b = a.reset()[0], b.reset()[0]  # the seed carries on to the next episodes
    np.testing.assert_array_equal(after_a, after_b)
