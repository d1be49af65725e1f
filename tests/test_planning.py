"""MPPI planning at evaluation (an option of predict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pwm_agent import PWM
from pwm_agent.planning import MPPIConfig, MPPIPlanner

SMALL = MPPIConfig(horizon=3, iterations=3, num_samples=64, num_elites=8, num_policy_samples=8)


@pytest.fixture(scope="module")
def agent() -> PWM:
    from conftest import tiny_kwargs

    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(120)
    return model


def test_plans_have_the_right_shape_and_bounds(agent: PWM) -> None:
    obs = np.array([1.0, 0.0, 0.5], np.float32)
    action, _ = agent.predict(obs, deterministic=True, plan=SMALL)
    assert action.shape == (1,) and -2.0 <= action[0] <= 2.0
    batch, _ = agent.predict(np.stack([obs] * 5), deterministic=False, plan=SMALL)
    assert batch.shape == (5, 1) and np.all(np.abs(batch) <= 2.0)
    torch.manual_seed(0)
    first = agent.predict(obs, deterministic=True, plan=SMALL)[0]
    torch.manual_seed(0)
    np.testing.assert_array_equal(first, agent.predict(obs, deterministic=True, plan=SMALL)[0])


def test_planning_prefers_better_sequences(agent: PWM) -> None:
    """With a reward that only the action decides, the plan's mean moves to the best action."""
    policy = agent.policy
    planner = MPPIPlanner(policy.world_model, policy.actor, policy.critic, 0.99, MPPIConfig(
        horizon=2, iterations=6, num_samples=256, num_elites=32, num_policy_samples=0))
    planner._score = lambda z0, actions: -((actions[..., 0] - 0.6) ** 2).sum(0)  # type: ignore[method-assign]
    action = planner.plan(torch.zeros(3, 3), deterministic=True)
    assert torch.allclose(action[:, 0], torch.full((3,), 0.6), atol=0.05)


def test_planning_on_a_pretrained_task_agent(mt30_checkpoint: Path) -> None:
    task_agent = PWM.from_pretrained(mt30_checkpoint, task="cartpole-swingup", policy_kwargs=dict(actor_arch=[32]))
    action, _ = task_agent.predict(np.zeros(5, np.float32), plan=SMALL)
    assert action.shape == (1,)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="num_elites"):
        MPPIPlanner(None, None, None, 0.99, MPPIConfig(num_samples=4, num_policy_samples=0, num_elites=8))  # type: ignore[arg-type]
