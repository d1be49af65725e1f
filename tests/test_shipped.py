"""The shipped multi-task world models: load, bind each of their tasks, extract a policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pwm_agent import PWM, load_checkpoint
from pwm_agent.checkpoints import SHIPPED, SHIPPED_NAMES, shipped_checkpoint, shipped_episodes

TASKS = ["walker-stand", "cartpole-swingup", "reacher-easy", "cup-catch"]
# name -> (latent_dim, world-model parameter range)
SHAPES = {"mt4-1M": (128, (500_000, 1_000_000)), "mt4-5M": (512, (1_500_000, 2_000_000))}


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_checkpoint_describes_its_tasks(name: str) -> None:
    ckpt = load_checkpoint(shipped_checkpoint(name))
    assert ckpt.layout == "current" and ckpt.tasks is not None and [t.name for t in ckpt.tasks] == TASKS
    wm = ckpt.world_model
    latent, (low, high) = SHAPES[name]
    assert (wm.obs_dim, wm.action_dim, wm.config.latent_dim, wm.config.task_dim) == (24, 6, latent, 96)
    assert low < sum(p.numel() for p in wm.parameters()) < high
    # mt4-5M is stored in float16 (half the file); every model loads as float32
    assert {p.dtype for p in wm.parameters()} == {torch.float32}
    assert SHIPPED == "mt4-1M" and shipped_checkpoint() == shipped_checkpoint(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED_NAMES)
@pytest.mark.parametrize("task", TASKS)
def test_per_task_agent_extracts_from_shipped_episodes(task: str, name: str) -> None:
    agent = PWM.from_pretrained(shipped_checkpoint(name), task=task, seed=0, batch_size=16,
                                policy_kwargs=dict(actor_arch=[32], critic_arch=[32]))
    data = shipped_episodes(task, name)
    # mt4-5M's data has a learning history: 4 episodes of it come too
    assert data.num_episodes == {"mt4-1M": 4, "mt4-5M": 8}[name]
    assert data.observation_dim == agent.observation_space.shape[0]
    agent.extract_policy(data, 2)
    action, _ = agent.predict(np.zeros(agent.observation_space.shape, np.float32), deterministic=True)
    assert action.shape == agent.action_space.shape


def test_unknown_shipped_names() -> None:
    with pytest.raises(FileNotFoundError, match="available"):
        shipped_episodes("hopper-hop")
    with pytest.raises(FileNotFoundError, match="shipped: "):
        shipped_checkpoint("mt80-317M")
