"""Same seed, same result on CPU; different seeds, different results."""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env

from pwm_agent import PWM

from conftest import tiny_kwargs

OBS = np.random.default_rng(1).uniform(-1.0, 1.0, size=(8, 3)).astype(np.float32)


def run(seed: int, n_envs: int = 1) -> PWM:
    env = make_vec_env("Pendulum-v1", n_envs=n_envs) if n_envs > 1 else "Pendulum-v1"
    model = PWM("MlpPolicy", env, seed=seed, **tiny_kwargs())
    model.learn(90)
    return model


def parameters(model: PWM) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def test_same_seed_identical_runs():
    a, b = run(3), run(3)
    pa, pb = parameters(a), parameters(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.equal(pa[key], pb[key]), key
    n = a.replay_buffer.pos
    np.testing.assert_array_equal(a.replay_buffer.observations[:n], b.replay_buffer.observations[:n])
    np.testing.assert_array_equal(a.replay_buffer.actions[:n], b.replay_buffer.actions[:n])
    np.testing.assert_array_equal(a.predict(OBS, deterministic=True)[0], b.predict(OBS, deterministic=True)[0])
    # The stochastic policy draws from torch's global generator: same seed, same draws.
    torch.manual_seed(0)
    sa = a.predict(OBS)[0]
    torch.manual_seed(0)
    sb = b.predict(OBS)[0]
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(sa, a.predict(OBS, deterministic=True)[0])


def test_same_seed_identical_runs_vec_env():
    a, b = run(5, n_envs=2), run(5, n_envs=2)
    np.testing.assert_array_equal(a.predict(OBS, deterministic=True)[0], b.predict(OBS, deterministic=True)[0])
    np.testing.assert_array_equal(a.replay_buffer.rewards, b.replay_buffer.rewards)


def test_different_seeds_differ():
    a, b = run(0), run(1)
    n = a.replay_buffer.pos
    assert not np.array_equal(a.replay_buffer.observations[:n], b.replay_buffer.observations[:n])
    assert not torch.equal(parameters(a)["actor.mu.0.weight"], parameters(b)["actor.mu.0.weight"])
    assert not np.allclose(a.predict(OBS, deterministic=True)[0], b.predict(OBS, deterministic=True)[0])
