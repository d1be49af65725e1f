"""The shipped multi-task world model: loads, binds each of its tasks, extracts a policy."""

from __future__ import annotations

import numpy as np
import pytest

from pwm_agent import PWM, load_checkpoint
from pwm_agent.checkpoints import SHIPPED, shipped_checkpoint, shipped_episodes

TASKS = ["walker-stand", "cartpole-swingup", "reacher-easy", "cup-catch"]


def test_shipped_checkpoint_describes_its_tasks() -> None:
    ckpt = load_checkpoint(shipped_checkpoint())
    assert SHIPPED == "mt4-1M" and ckpt.layout == "current"
    assert ckpt.tasks is not None and [t.name for t in ckpt.tasks] == TASKS
    wm = ckpt.world_model
    assert (wm.obs_dim, wm.action_dim, wm.config.latent_dim, wm.config.task_dim) == (24, 6, 128, 96)
    assert 500_000 < sum(p.numel() for p in wm.parameters()) < 1_000_000


@pytest.mark.parametrize("task", TASKS)
def test_per_task_agent_extracts_from_shipped_episodes(task: str) -> None:
    agent = PWM.from_pretrained(shipped_checkpoint(), task=task, seed=0, batch_size=16,
                                policy_kwargs=dict(actor_arch=[32], critic_arch=[32]))
    data = shipped_episodes(task)
    assert data.num_episodes == 4 and data.observation_dim == agent.observation_space.shape[0]
    agent.extract_policy(data, 2)
    action, _ = agent.predict(np.zeros(agent.observation_space.shape, np.float32), deterministic=True)
    assert action.shape == agent.action_space.shape


def test_unknown_shipped_names() -> None:
    with pytest.raises(FileNotFoundError, match="available"):
        shipped_episodes("hopper-hop")
    with pytest.raises(FileNotFoundError):
        shipped_checkpoint("mt80-317M")
