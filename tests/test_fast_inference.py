"""The NumPy acting path mirrors the PyTorch one and follows weight updates live."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pwm_agent.pwm.fast_inference import make_numpy_actor
from pwm_agent.pwm.policies import PWMPolicy

OBS_SPACE = spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT_SPACE = spaces.Box(-2.0, 3.0, (2,), np.float32)


def make_policy(activation: str, **wm: object) -> PWMPolicy:
    torch.manual_seed(0)
    return PWMPolicy(
        OBS_SPACE,
        ACT_SPACE,
        world_model_kwargs=dict(latent_dim=16, enc_dims=[32], mlp_dims=[32], activation=activation, **wm),
        actor_arch=[24, 12],
        critic_arch=[8],
    )


def torch_actions(policy: PWMPolicy, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return policy._predict(torch.as_tensor(obs), deterministic=True).numpy()


@pytest.mark.parametrize("activation", ["mish", "silu", "relu", "elu", "tanh"])
@pytest.mark.parametrize("shape", [(5,), (3, 5)])
def test_numpy_path_matches_torch(activation, shape):
    policy = make_policy(activation)
    obs = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 3
    fast = make_numpy_actor(policy.world_model, policy.actor)
    assert fast is not None
    np.testing.assert_allclose(fast(obs, deterministic=True), torch_actions(policy, obs), rtol=1e-5, atol=1e-6)
    # predict() goes through it and rescales to the bounds.
    expected = ACT_SPACE.low + 0.5 * (torch_actions(policy, obs) + 1.0) * (ACT_SPACE.high - ACT_SPACE.low)
    np.testing.assert_allclose(policy.predict(obs, deterministic=True)[0], expected, rtol=1e-5, atol=1e-5)


def test_numpy_path_sees_weight_updates_and_reloads():
    policy = make_policy("silu")
    obs = np.ones(5, np.float32)
    before = policy.predict(obs, deterministic=True)[0]
    with torch.no_grad():
        for param in policy.actor.parameters():
            param.add_(0.5)
    after = policy.predict(obs, deterministic=True)[0]
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, policy.unscale_action(torch_actions(policy, obs)), rtol=1e-5, atol=1e-5)
    other = make_policy("silu")
    other.load_state_dict(policy.state_dict())
    np.testing.assert_allclose(other.predict(obs, deterministic=True)[0], after, rtol=1e-6)


def test_multitask_models_use_the_torch_path():
    policy = make_policy("silu", num_tasks=2, task_dim=4)
    assert make_numpy_actor(policy.world_model, policy.actor) is None


def test_stochastic_numpy_actions_follow_torch_seed():
    policy = make_policy("mish")
    obs = np.zeros(5, np.float32)
    torch.manual_seed(1)
    a = policy.predict(obs)[0]
    torch.manual_seed(1)
    b = policy.predict(obs)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, policy.predict(obs, deterministic=True)[0])
