"""Unsupported settings fail early with errors that name the fix; non-finite data handling."""

from __future__ import annotations

import platform
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from pwm_agent import PWM, PWMPolicy
from pwm_agent.buffers import SequenceReplayBuffer, WindowBatch

from conftest import DictObsWrapper, tiny_kwargs


class SpaceEnv(gym.Env):
    """An env with arbitrary spaces (random observations, zero reward)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX_OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX_ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


# --------------------------------------------------------------------------- spaces
def test_discrete_actions():
    with pytest.raises(ValueError, match="Discrete actions are not supported: use SB3's DQN/PPO"):
        PWM("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    with pytest.raises(ValueError, match="1-D continuous Box action space"):
        PWM("MlpPolicy", SpaceEnv(BOX_OBS, spaces.MultiDiscrete([2, 3])), **tiny_kwargs())
    with pytest.raises(ValueError, match="1-D continuous Box action space"):
        PWM("MlpPolicy", SpaceEnv(BOX_OBS, spaces.Box(-1, 1, (2, 2), np.float32)), **tiny_kwargs())


@pytest.mark.parametrize(
    "action_space",
    [
        spaces.Box(-np.inf, np.inf, (2,), np.float32),
        spaces.Box(np.array([-1.0, -np.inf], np.float32), np.array([1.0, 1.0], np.float32)),
    ],
    ids=["both", "one-side"],
)
def test_infinite_action_bounds(action_space):
    with pytest.raises(ValueError, match="infinite bounds.*TransformAction"):
        PWM("MlpPolicy", SpaceEnv(BOX_OBS, action_space), **tiny_kwargs())
    # the wrapper the message recommends is accepted
    finite = spaces.Box(-1.0, 1.0, (2,), np.float32)
    PWM("MlpPolicy", gym.wrappers.TransformAction(SpaceEnv(BOX_OBS, action_space), lambda a: a, finite),
        **tiny_kwargs())


@pytest.mark.parametrize(
    "observation_space",
    [
        spaces.Box(0, 255, (32, 32, 3), np.uint8),
        spaces.Box(-1.0, 1.0, (3, 4), np.float32),
        spaces.Discrete(5),
        spaces.MultiBinary(4),
    ],
    ids=["image", "2d-box", "discrete", "multibinary"],
)
def test_unsupported_observation_spaces(observation_space):
    with pytest.raises(ValueError, match=r"flat Box observations.*FlattenObservation"):
        PWM("MlpPolicy", SpaceEnv(observation_space, BOX_ACT), **tiny_kwargs())


@pytest.mark.parametrize(
    ("policy_kwargs", "match"),
    [
        (dict(net_arch=[64, 64]), r"\['net_arch'\] are not arguments of PWMPolicy \(for net_arch use actor_arch"),
        (dict(activation_fn=torch.nn.ReLU), "for activation_fn use activation='silu'"),
        (dict(world_model_kwargs=dict(latent=32)), r"world_model_kwargs \['latent'\] are not WorldModelConfig fields"),
        (dict(world_model=dict(latent_dim=32, widths=[8])), r"world_model \['widths'\] are not WorldModelConfig"),
    ],
)
def test_unknown_policy_kwargs_name_the_accepted_ones(policy_kwargs, match):
    with pytest.raises(TypeError, match=match):
        PWM("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)


def test_policy_kwargs_of_a_forwarding_subclass_are_accepted():
    class ExtraPolicy(PWMPolicy):
        def __init__(self, *args, extra: int = 1, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = extra

    model = PWM(ExtraPolicy, "Pendulum-v1", policy_kwargs=dict(actor_arch=[16], extra=2))
    assert model.policy.extra == 2
    with pytest.raises(TypeError, match=r"\['actr_arch'\] are not arguments of ExtraPolicy"):
        PWM(ExtraPolicy, "Pendulum-v1", policy_kwargs=dict(actr_arch=[16]))


def test_image_observations_report_the_envs_own_shape():
    # SB3 transposes images to channels-first before PWM sees them; the message shows the user's shape
    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*Image observations are not supported"):
        PWM("MlpPolicy", SpaceEnv(spaces.Box(0, 255, (32, 32, 3), np.uint8), BOX_ACT), **tiny_kwargs())


def test_mlp_policy_with_dict_observations():
    env = DictObsWrapper(gym.make("Pendulum-v1"))
    with pytest.raises(ValueError, match="You must use `MultiInputPolicy`"):
        PWM("MlpPolicy", env, **tiny_kwargs())


def test_dict_with_non_box_entry():
    space = spaces.Dict({"a": BOX_OBS, "b": spaces.Discrete(3)})
    with pytest.raises(ValueError, match="only Box entries can be flattened"):
        PWM("MultiInputPolicy", SpaceEnv(space, BOX_ACT), **tiny_kwargs())


def test_vec_normalize_over_dict_observations():
    env = VecNormalize(DummyVecEnv([lambda: DictObsWrapper(gym.make("Pendulum-v1"))]))
    with pytest.raises(ValueError, match="flatten the observations first"):
        PWM("MultiInputPolicy", env, **tiny_kwargs())


def test_policy_rejects_non_flat_observation_space():
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        PWMPolicy(spaces.Box(-1, 1, (2, 2)), BOX_ACT)


# --------------------------------------------------------------------------- hyperparameters
def test_no_env_and_no_spaces_names_the_fix():
    with pytest.raises(ValueError, match="needs an env, or .*observation_space and action_space"):
        PWM("MlpPolicy", None, seed=0, **tiny_kwargs())
    with pytest.raises(ValueError, match="observation_space and action_space"):
        PWM("MlpPolicy", None, observation_space=spaces.Box(-1, 1, (3,)), **tiny_kwargs())


def test_learning_starts_too_small(tmp_path):
    with pytest.raises(ValueError, match=r"set learning_starts >= horizon \* n_envs = 8"):
        PWM("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2), **tiny_kwargs(learning_starts=7))
    PWM("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2), **tiny_kwargs(learning_starts=8))
    # Checked again when a saved agent is loaded onto more sub-envs.
    model = PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs(learning_starts=6))
    model.save(tmp_path / "one_env.zip")
    with pytest.raises(ValueError, match="learning_starts >= horizon"):
        PWM.load(tmp_path / "one_env.zip", env=make_vec_env("Pendulum-v1", n_envs=2))
    PWM.load(tmp_path / "one_env.zip", env=make_vec_env("Pendulum-v1", n_envs=2), learning_starts=8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(horizon=0), "horizon must be >= 1"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(replay_buffer_kwargs=dict(hook=object())), "replay_buffer_kwargs=.* is not JSON-serialisable"),
        (dict(nan_policy="ignore"), "nan_policy must be 'raise' or 'skip'"),
        (dict(critic_minibatches=0), "critic_minibatches=0 must be between 1"),
        (dict(critic_minibatches=10_000), "batch_size \\* horizon"),
        (dict(replay_buffer_class=ReplayBuffer), "SequenceReplayBuffer subclass"),
        (dict(bc_coef=-1.0), "bc_coef must be a finite number >= 0"),
        (dict(bc_coef=float("nan")), "bc_coef must be a finite number >= 0"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs(**kwargs))


def test_bad_world_model_options():
    with pytest.raises(ValueError, match="Unknown world-model preset"):
        PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs(policy_kwargs=dict(world_model="giant")))
    with pytest.raises(ValueError, match="multiple of simnorm_dim"):
        PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs(policy_kwargs=dict(world_model_kwargs=dict(latent_dim=20))))
    with pytest.raises(ValueError, match="Unknown activation"):
        PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs(policy_kwargs=dict(activation="swish2")))


def test_predict_errors():
    model = PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs())
    with pytest.raises(ValueError, match=r"Expected an observation of shape \(3,\) or \(N, 3\)"):
        model.predict(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"Expected an observation of shape"):
        model.predict(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="takes Box observations, but a dict was given"):
        model.predict({"a": np.zeros(2), "b": np.zeros(1)})
    dict_model = PWM("MultiInputPolicy", DictObsWrapper(gym.make("Pendulum-v1")), **tiny_kwargs())
    with pytest.raises(ValueError, match=r"missing keys \['b'\]"):
        dict_model.predict({"a": np.zeros(2, np.float32)})


def test_unsaveable_settings_name_the_fix(tmp_path):
    # Constructor arguments must be JSON values: checked when the agent is built, not at save.
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        PWM("MlpPolicy", "Pendulum-v1", replay_buffer_kwargs={"handle_timeout_termination": object()},
            **tiny_kwargs())

    class MyPolicy(PWMPolicy):
        pass

    model = PWM(MyPolicy, "Pendulum-v1", **tiny_kwargs())
    with pytest.raises(ValueError, match="register it in PWM.policy_aliases"):
        model.save(tmp_path / "custom.zip")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- non-finite data
class NonFiniteEnv(gym.Env):
    """``obs = [1, t]`` (t counts all steps, across episodes); NaN observations and rewards now and then.

    Every finite transition satisfies ``next_obs[1] == obs[1] + 1``, which lets tests
    recognise transitions built from a non-finite observation.
    """

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, nan_obs_every: int = 17, nan_reward_every: int = 23, inf: bool = False) -> None:
        self.t = 0
        self.nan_obs_every, self.nan_reward_every = nan_obs_every, nan_reward_every
        self.bad = np.inf if inf else np.nan

    def _obs(self) -> np.ndarray:
        obs = np.array([1.0, self.t], np.float32)
        if self.nan_obs_every and self.t % self.nan_obs_every == 0:
            obs[1] = self.bad
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.array([1.0, self.t], np.float32), {}

    def step(self, action):
        self.t += 1
        reward = self.bad if self.nan_reward_every and self.t % self.nan_reward_every == 0 else -float(action[0] ** 2)
        return self._obs(), reward, False, self.t % 40 == 0, {}


class CheckedBuffer(SequenceReplayBuffer):
    """The real buffer; it also checks every batch the algorithm samples while training."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches = 0

    def sample_windows(self, *args: Any, **kwargs: Any) -> WindowBatch:
        batch = super().sample_windows(*args, **kwargs)
        for tensor in batch[:5]:  # the float fields (tasks is None for replayed data)
            assert bool(tensor.isfinite().all()), "a sampled window holds a non-finite value"
        self.batches += 1
        return batch


@pytest.mark.parametrize(
    ("env_kwargs", "step"),
    [
        (dict(nan_obs_every=17, nan_reward_every=0), 17),
        (dict(nan_obs_every=0, nan_reward_every=23), 23),
        (dict(nan_obs_every=17, nan_reward_every=0, inf=True), 17),
    ],
    ids=["nan-obs", "nan-reward", "inf-obs"],
)
def test_nan_policy_raise(env_kwargs, step):
    model = PWM("MlpPolicy", NonFiniteEnv(**env_kwargs), **tiny_kwargs(learning_starts=10))
    with pytest.raises(ValueError, match=r"Non-finite observation or reward .* nan_policy='skip'"):
        model.learn(100)
    assert model.num_timesteps == step


def test_nan_policy_skip_keeps_training():
    model = PWM(
        "MlpPolicy", NonFiniteEnv(), nan_policy="skip", replay_buffer_class=CheckedBuffer, seed=0, **tiny_kwargs()
    )
    model.learn(200)
    rb = model.replay_buffer
    assert isinstance(rb, CheckedBuffer)
    assert model.num_timesteps == 200 and model._n_updates == 150
    # NaN observations at t = 17, 34, ... (11 of them) and NaN rewards at t = 23, 46, ... (8).
    assert model.skipped_transitions >= 11 + 8
    assert rb.batches >= 150
    assert np.isfinite(rb.observations).all() and np.isfinite(rb.rewards).all()
    for _ in range(20):
        batch = rb.sample_windows(64, model.horizon)
        assert all(bool(t.isfinite().all()) for t in batch[:5])
    for name, param in model.policy.named_parameters():
        assert param.isfinite().all(), name
    assert np.isfinite(model.predict(np.array([1.0, 5.0], np.float32), deterministic=True)[0]).all()


def test_nan_policy_skip_never_trains_on_a_non_finite_observation():
    model = PWM("MlpPolicy", NonFiniteEnv(nan_reward_every=0), nan_policy="skip", seed=0, **tiny_kwargs())
    model.learn(120)
    rb = model.replay_buffer
    n = rb.pos
    valid = rb.chain[:n, 0] >= 0
    obs, next_obs = rb.observations[:n, 0], rb.next_observations[:n, 0]
    # Both transitions around each NaN observation (t = 17, 34, ...) are invalid ...
    assert model.skipped_transitions == 2 * (120 // 17)
    # ... so every stored valid transition is a real step of the env.
    np.testing.assert_array_equal(next_obs[valid, 1], obs[valid, 1] + 1)


def test_compile_updates_without_a_compiler_names_the_fix(tiny, tmp_path, monkeypatch):
    from torch._inductor import cpp_builder

    agent = PWM("MlpPolicy", "Pendulum-v1", compile_updates=True, **tiny)
    agent.save(tmp_path / "agent")
    monkeypatch.setenv("PATH", "")
    cpp_builder.cpp_compiler_search.cache_clear()  # torch remembers the compiler it found
    try:
        # Loading and predicting need no compiler; the first update does.
        loaded = PWM.load(tmp_path / "agent", env=gym.make("Pendulum-v1"))
        loaded.predict(np.zeros(3, np.float32), deterministic=True)
        with pytest.raises(ValueError, match="needs a C\\+\\+ compiler.*compile_updates=False"):
            loaded.learn(tiny["learning_starts"] + 5)
    finally:
        cpp_builder.cpp_compiler_search.cache_clear()


def _bf16_warnings(tiny) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PWM("MlpPolicy", "Pendulum-v1", use_bf16=True, **tiny)  # tiny runs on the CPU
    return [w for w in caught if "use_bf16=True on a CPU without native bf16" in str(w.message)]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 bf16 probes")
def test_bf16_on_a_cpu_without_native_bf16_warns(tiny, monkeypatch):
    # This machine, as it is: a warning exactly when neither AVX512-BF16 nor AMX is there.
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert len(_bf16_warnings(tiny)) == (0 if native else 1)
    # The other kind of CPU (not available here: its probe answers are set).
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert len(_bf16_warnings(tiny)) == (1 if native else 0)
