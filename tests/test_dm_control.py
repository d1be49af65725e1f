"""dm_control tasks through shimmy: Dict observations flattened by ``MultiInputPolicy``."""

from __future__ import annotations

import os
from importlib.util import find_spec

import numpy as np
import pytest

# dm_control renders headless through EGL. The setting holds for the whole test process, and
# MuJoCo's import fails with it where EGL is missing, so set it only where dm_control is installed.
if find_spec("dm_control") is not None:
    os.environ.setdefault("MUJOCO_GL", "egl")
shimmy = pytest.importorskip("shimmy", reason="install the 'dmc' extra for dm_control tasks")
pytest.importorskip("dm_control")

import gymnasium as gym  # noqa: E402

from pwm_agent import PWM  # noqa: E402
from conftest import tiny_kwargs  # noqa: E402

gym.register_envs(shimmy)


def test_dm_control_walker_learns_and_predicts(tmp_path):
    env = gym.make("dm_control/walker-run-v0")
    model = PWM("MultiInputPolicy", env, seed=0, **tiny_kwargs())
    model.learn(120)
    assert model._n_updates > 0
    # 24 = height (scalar) + orientations (14) + velocity (9), flattened in the space's key order.
    assert model.observation_space.shape == (24,)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (6,)
    assert np.all(action >= env.action_space.low) and np.all(action <= env.action_space.high)
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    actions, _ = model.predict(batch, deterministic=True)
    np.testing.assert_allclose(actions, np.stack([action, action]), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "walker")
    loaded = PWM.load(tmp_path / "walker")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
