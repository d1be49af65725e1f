"""Build a single-task PWM agent on a pretrained multi-task TD-MPC2/PWM world model."""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from pwm_agent.checkpoints import CheckpointError, TDMPC2Checkpoint, load_checkpoint
from pwm_agent.envs.task_sets import TaskSpec, task_id
from pwm_agent.world_model import WorldModel

if TYPE_CHECKING:
    from pwm_agent.pwm.pwm import PWM

__all__ = ["from_pretrained"]


# Actor/critic learning rate on a frozen pre-trained model (5e-4 otherwise). Extraction from a
# frozen multi-task model swings less and scores higher with it (docs/multitask.md).
FROZEN_MODEL_LEARNING_RATE = 1e-4


def _env_dims(env: Any) -> tuple[spaces.Space, spaces.Space]:
    if isinstance(env, str):
        env = gym.make(env)
    return env.observation_space, env.action_space


def _spaces_for(spec: TaskSpec) -> tuple[spaces.Box, spaces.Box]:
    """A task's own spaces (dm_control and Meta-World actions live in [-1, 1])."""
    obs = spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
    return obs, spaces.Box(-1.0, 1.0, (spec.action_dim,), np.float32)


def _resolve_task(ckpt: TDMPC2Checkpoint, task: str | int, path: Any) -> int | None:
    """The task's id in the checkpoint, or ``None`` for a task it does not know (a new
    task); a name close to a known one is taken for a typo and raises."""
    num_tasks = ckpt.world_model.config.num_tasks
    if num_tasks == 0:
        raise CheckpointError(
            f"{os.fspath(path)}: a single-task checkpoint (no task embeddings), so there is no task to pick. "
            "Use pwm_agent.load_world_model(path) for its world model, or pass a multi-task checkpoint."
        )
    if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
        task = int(task)
        if not 0 <= task < num_tasks:
            raise ValueError(f"Task id {task} is outside the checkpoint's 0..{num_tasks - 1}.")
        return task
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name or an integer id, got {type(task).__name__}.")
    names = [spec.name for spec in ckpt.tasks] if ckpt.tasks is not None else []
    if task in names:
        return task_id(task, ckpt.tasks)
    spelled = {_normalised(name): name for name in names}.get(_normalised(task))
    if spelled is not None:
        raise ValueError(f"Task {task!r} is not in the checkpoint's task set; did you mean {spelled!r}?")
    return None


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(" ", "-")


def _close_names(task: str | int, ckpt: TDMPC2Checkpoint) -> list[str]:
    """Known task names close to an unknown ``task`` (a typo, or a new task's chosen name)."""
    if not isinstance(task, str) or ckpt.tasks is None:
        return []
    return difflib.get_close_matches(_normalised(task), [spec.name for spec in ckpt.tasks], n=3, cutoff=0.8)


def _add_task_row(wm: WorldModel, init: str | int, tasks: Any, action_dim: int) -> dict[str, torch.Tensor]:
    """State dict of ``wm`` with one more task-embedding row and action-mask row."""
    state = {k: v.clone() for k, v in wm.state_dict().items()}
    rows = state["task_emb.weight"]
    if init == "mean":
        new_row = rows.mean(0, keepdim=True)
    else:
        source = task_id(init, tasks) if isinstance(init, str) and tasks is not None else init
        if not isinstance(source, int) or not 0 <= source < rows.shape[0]:
            raise ValueError(f"task_init must be 'mean', a task name of the checkpoint or an id, got {init!r}.")
        new_row = rows[source : source + 1]
    state["task_emb.weight"] = torch.cat([rows, new_row])
    mask = torch.zeros(1, wm.action_dim)
    mask[0, :action_dim] = 1.0
    state["action_masks"] = torch.cat([state["action_masks"], mask])
    return state


def from_pretrained(
    cls: type[PWM],
    path: str | os.PathLike[str],
    task: str | int,
    env: Any = None,
    task_init: str | int = "mean",
    freeze_world_model: bool = True,
    **kwargs: Any,
) -> PWM:
    """See :meth:`pwm_agent.PWM.from_pretrained`."""
    ckpt = load_checkpoint(path, map_location="cpu")
    wm = ckpt.world_model
    tid = _resolve_task(ckpt, task, path)
    if env is not None:
        obs_space, act_space = _env_dims(env)
        if tid is None and (close := _close_names(task, ckpt)):
            warnings.warn(
                f"Task {task!r} is not in the checkpoint's task set, so it is trained as a new task (a new "
                f"embedding row). Did you mean {close[0]!r}? Pass a known name to use its embedding.",
                UserWarning, stacklevel=3,
            )
    elif tid is not None and ckpt.tasks is not None:
        obs_space, act_space = _spaces_for(ckpt.tasks[tid])
    elif tid is not None:
        raise ValueError(
            f"The checkpoint has no task table (its task count matches neither MT30 nor MT80), so the spaces of "
            f"task {task!r} are unknown: pass that task's `env`."
        )
    else:
        close = _close_names(task, ckpt)
        known = f" Did you mean {close[0]!r}?" if close else ""
        known += f" It knows: {[spec.name for spec in ckpt.tasks]}." if ckpt.tasks is not None else ""
        raise ValueError(
            f"Task {task!r} is not in the checkpoint's task set.{known} For a new task pass `env` (its spaces "
            "define the task) and optionally `task_init` ('mean' or a task name to copy the embedding from)."
        )
    obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
    if tid is not None and ckpt.tasks is not None:
        spec = ckpt.tasks[tid]
        if (obs_dim, act_dim) != (spec.obs_dim, spec.action_dim):
            raise ValueError(
                f"The env has obs/action dims ({obs_dim}, {act_dim}) but task {spec.name!r} has "
                f"({spec.obs_dim}, {spec.action_dim}); pass the env of that task."
            )
    if obs_dim > wm.obs_dim or act_dim > wm.action_dim:
        raise ValueError(
            f"The env's obs/action dims ({obs_dim}, {act_dim}) exceed the model's padded ({wm.obs_dim}, "
            f"{wm.action_dim}); this world model cannot represent the task."
        )
    config, state = wm.config, wm.state_dict()
    if tid is None:
        state = _add_task_row(wm, task_init, ckpt.tasks, act_dim)
        config = replace(config, num_tasks=config.num_tasks + 1)
        tid = config.num_tasks - 1
    action_dims = [int(n) for n in state["action_masks"].sum(1).tolist()]
    policy_kwargs = {
        "world_model": config.to_dict(), "task_id": tid, "model_obs_dim": wm.obs_dim,
        "model_action_dim": wm.action_dim, "action_dims": action_dims, **kwargs.pop("policy_kwargs", {}),
    }
    if freeze_world_model:
        kwargs.setdefault("model_iterations", 0)
        kwargs.setdefault("learning_rate", FROZEN_MODEL_LEARNING_RATE)
    if env is None:
        kwargs.update(observation_space=obs_space, action_space=act_space)
    agent = cls("MlpPolicy", env, policy_kwargs=policy_kwargs, **kwargs)
    agent.policy.world_model.load_state_dict({**agent.policy.world_model.state_dict(), **state})
    return agent
