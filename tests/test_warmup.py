"""``learning_starts="auto"``: TD-MPC2's five random episodes, at least 1,000 steps."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
from conftest import tiny_kwargs
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

from pwm_agent import PWM


def auto_kwargs(**overrides: object) -> dict[str, object]:
    """Tiny agent arguments that leave ``learning_starts`` to its default."""
    kwargs = tiny_kwargs(**overrides)
    del kwargs["learning_starts"]
    return kwargs


class NoLimitEnv(gym.Env):
    """An env built without ``gymnasium.make``: no spec, so no known episode length."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize(
    ("make_env", "bound"),
    [
        (lambda: "Pendulum-v1", 1000),  # 200-step episodes: 5 x 200 = 1000
        (lambda: "Hopper-v5", 5000),
        (lambda: gym.make("Pendulum-v1", max_episode_steps=400), 2000),
        (lambda: make_vec_env("Hopper-v5", n_envs=2), 5000),
        (lambda: gym.make_vec("HalfCheetah-v5", num_envs=2, vectorization_mode="sync"), 5000),
        (lambda: NoLimitEnv(), 1000),
        (lambda: gym.wrappers.TimeLimit(NoLimitEnv(), 700), 3500),  # a TimeLimit without a spec
        (lambda: SubprocVecEnv([lambda: gym.make("Hopper-v5")] * 2), 5000),
        (lambda: make_vec_env("Pendulum-v1", n_envs=300), 1200),  # horizon 4 x 300 envs
    ],
    ids=["pendulum", "hopper", "time-limit-400", "sb3-vec", "gymnasium-vector", "no-limit", "bare-time-limit",
         "subproc", "many-envs"],
)
def test_bound_follows_the_time_limit(make_env, bound: int) -> None:
    agent = PWM("MlpPolicy", make_env(), **auto_kwargs())
    assert agent.learning_starts == bound


def test_phase_ends_after_five_episodes_and_1000_steps() -> None:
    # Random Hopper episodes last a few dozen steps: five have ended long before 1,000 steps.
    agent = PWM("MlpPolicy", "Hopper-v5", seed=0, **auto_kwargs())
    agent.learn(1010)
    assert agent.learning_starts == 1000
    assert agent._n_updates == 10


def test_early_end_equals_the_old_fixed_default() -> None:
    # Where the phase ends at 1,000 steps, "auto" is the same run as learning_starts=1000.
    auto = PWM("MlpPolicy", "Hopper-v5", seed=3, **auto_kwargs()).learn(1020)
    fixed = PWM("MlpPolicy", "Hopper-v5", seed=3, **tiny_kwargs(learning_starts=1000)).learn(1020)
    for a, b in zip(auto.policy.parameters(), fixed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_phase_without_early_ends_runs_to_the_bound() -> None:
    env = gym.make("Pendulum-v1", max_episode_steps=300)
    agent = PWM("MlpPolicy", env, seed=0, **auto_kwargs(learning_rate_final=None))
    agent.learn(1200)  # four episodes ended by then: still random
    assert (agent.learning_starts, agent._n_updates) == (1500, 0)
    agent.learn(400, reset_num_timesteps=False)
    assert (agent.learning_starts, agent._n_updates) == (1500, 100)


def test_explicit_value_is_kept() -> None:
    assert PWM("MlpPolicy", "Hopper-v5", **tiny_kwargs(learning_starts=123)).learning_starts == 123
    assert PWM("MlpPolicy", "Hopper-v5", **tiny_kwargs(learning_starts=1e4)).learning_starts == 10_000
    assert PWM("MlpPolicy", "Hopper-v5", **tiny_kwargs(learning_starts="auto")).learning_starts == 5000


@pytest.mark.parametrize("value", ["5000", "Auto", -1, 2.5, float("nan"), None, True])
def test_bad_value_names_the_fix(value: object) -> None:
    with pytest.raises(ValueError, match=r'whole number of env steps >= 0 or "auto"'):
        PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs(learning_starts=value))


def test_set_attribute_is_not_overwritten_by_learn() -> None:
    agent = PWM("MlpPolicy", "Hopper-v5", **auto_kwargs())
    agent.learning_starts = 20  # as SB3 users do
    agent.learn(30)
    assert agent.learning_starts == 20
    assert agent._n_updates == 10


def test_auto_survives_save_and_load(tmp_path: Path) -> None:
    agent = PWM("MlpPolicy", "Pendulum-v1", **auto_kwargs())
    agent.save(tmp_path / "auto")
    # "auto" is saved as the rule, so it follows the env the agent is loaded with.
    loaded = PWM.load(tmp_path / "auto", env=gym.make("Pendulum-v1", max_episode_steps=600))
    assert loaded.learning_starts == 3000
    assert PWM.load(tmp_path / "auto", env=gym.make("Pendulum-v1")).learning_starts == 1000


def test_hand_set_value_of_agent_without_env_is_kept() -> None:
    env = gym.make("Pendulum-v1")
    agent = PWM("MlpPolicy", None, observation_space=env.observation_space, action_space=env.action_space,
                **auto_kwargs())
    agent.learning_starts = 20
    agent.set_env(env)
    agent.learn(30)
    assert (agent.learning_starts, agent._n_updates) == (20, 10)


def test_loaded_agent_past_its_random_phase_trains_at_once(tmp_path: Path) -> None:
    agent = PWM("MlpPolicy", "Hopper-v5", seed=0, **auto_kwargs(learning_rate_final=None)).learn(1010)
    agent.save(tmp_path / "hopper")  # without its replay buffer
    loaded = PWM.load(tmp_path / "hopper", env=gym.make("Hopper-v5"))
    with pytest.warns(RuntimeWarning, match="Training resumes at 1010 env steps"):
        loaded.learn(5, reset_num_timesteps=False)
    assert loaded.learning_starts <= 1010
    assert loaded._n_updates == agent._n_updates + 5


def test_agent_built_without_env_takes_the_bound_of_its_env() -> None:
    env = gym.make("Pendulum-v1", max_episode_steps=300)
    agent = PWM("MlpPolicy", None, observation_space=env.observation_space, action_space=env.action_space,
                **auto_kwargs())
    agent.set_env(env)
    agent.learn(10)
    assert agent.learning_starts == 1500
