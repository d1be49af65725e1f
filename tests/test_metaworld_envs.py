"""MT80's Meta-World tasks as Gymnasium envs.

Needs the ``metaworld`` extra, which cannot share an environment with the ``dmc``
extra of the main test suite; run it in its own environment::

    pip install torch==2.13.0 && pip install -e ".[metaworld]" pytest && python -m pytest tests/test_metaworld_envs.py
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

import pwm_agent  # noqa: F401  (registers the envs)
from pwm_agent.envs.mw_tasks import METAWORLD_TASKS
from pwm_agent.envs.task_sets import MT80

HAS_METAWORLD = importlib.util.find_spec("metaworld") is not None
needs_metaworld = pytest.mark.skipif(not HAS_METAWORLD, reason="needs the metaworld extra (own environment)")


def test_all_fifty_tasks_are_registered_with_mt80_lengths() -> None:
    specs = {spec.name: spec for spec in MT80}
    assert len(METAWORLD_TASKS) == 50
    for task in METAWORLD_TASKS:
        assert gym.spec(f"pwm_agent/{task}").max_episode_steps == specs[task].episode_length == 100


@pytest.mark.skipif(HAS_METAWORLD, reason="checks the error without metaworld")
def test_missing_metaworld_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pwm_agent\[metaworld\]"):
        gym.make("pwm_agent/mw-reach")


@needs_metaworld
def test_every_task_builds_with_the_table_dims() -> None:
    specs = {spec.name: spec for spec in MT80}
    for task in METAWORLD_TASKS:
        env = gym.make(f"pwm_agent/{task}")
        assert env.observation_space.shape == (specs[task].obs_dim,), task
        assert env.action_space.shape == (specs[task].action_dim,), task
        env.close()


@needs_metaworld
def test_episode_seeding_and_success_flag() -> None:
    env = gym.make("pwm_agent/mw-reach")
    obs, _ = env.reset(seed=3)
    again, _ = gym.make("pwm_agent/mw-reach").reset(seed=3)
    np.testing.assert_array_equal(obs, again)
    other, _ = env.reset()
    assert not np.allclose(obs, other)  # goals are drawn anew at every reset
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated and obs.dtype == np.float32 and np.isfinite(reward)
        assert info["success"] in (0.0, 1.0)
    assert steps == 100


@needs_metaworld
def test_constructor_seed_and_long_episodes() -> None:
    first = [gym.make("pwm_agent/mw-reach", seed=7).reset()[0] for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])
    env = gym.make("pwm_agent/mw-reach", max_episode_steps=300)  # past Meta-World's own 500-step limit
    env.reset(seed=0)
    for _ in range(300):
        env.step(env.action_space.sample())


@needs_metaworld
def test_pwm_runs_on_a_metaworld_task() -> None:
    from pwm_agent import PWM

    agent = PWM("MlpPolicy", "pwm_agent/mw-reach", learning_starts=30, batch_size=8, horizon=3,
                policy_kwargs=dict(world_model="small", actor_arch=[16], critic_arch=[16]), seed=0)
    agent.learn(60)
    assert agent.num_timesteps == 60
