"""Read TD-MPC2's offline data chunks (the MT30/MT80 datasets) without tensordict and without
running code from the files.

A chunk is a ``torch.save``d TensorDict of batch shape ``[episodes, T + 1]`` with keys
``obs [E, T + 1, O]``, ``action [E, T + 1, A]``, ``reward [E, T + 1]`` and ``task
[E, T + 1]``; the first action and reward of each episode are NaN (nothing led to the
first observation). Observations and actions are zero-padded to the task set's
largest dims. Files are read with ``torch.load(weights_only=True)``; the tensordict
names in the pickle are mapped to inert stand-ins that only collect the tensors.
"""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pwm_agent.datasets.dataset import DatasetError, OfflineDataset
from pwm_agent.envs.task_sets import TASK_SETS, TaskSpec, task_id

__all__ = ["load_tdmpc2"]

_KEYS = ("obs", "action", "reward", "task")


class _TensorDictStandIn:
    """Takes the place of tensordict's classes while unpickling: keeps the state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = {"args": args, **kwargs}

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _make_td(cls: Any, state: Any, *args: Any) -> Any:
    """Stand-in for ``tensordict._reductions._make_td`` (tensordict >= 0.5): returns the state."""
    return {"state": state}


_TENSORDICT_NAMES = [
    (_make_td, "tensordict._reductions._make_td"),
    (_TensorDictStandIn, "tensordict._td.TensorDict"),
    (_TensorDictStandIn, "tensordict.tensordict.TensorDict"),
    (_TensorDictStandIn, "tensordict._tensordict.TensorDict"),
]


def _find_tensors(node: Any, depth: int = 0) -> dict[str, torch.Tensor] | None:
    """The innermost mapping holding TD-MPC2's keys as tensors, wherever the pickle put it."""
    if depth > 8:
        return None
    if isinstance(node, _TensorDictStandIn):
        node = node.state
    if isinstance(node, dict):
        if all(isinstance(node.get(k), torch.Tensor) for k in ("obs", "action", "reward")):
            return node
        children: Sequence[Any] = list(node.values())
    elif isinstance(node, (list, tuple)):
        children = node
    else:
        return None
    for child in children:
        found = _find_tensors(child, depth + 1)
        if found is not None:
            return found
    return None


def _read_chunk(path: Path, map_location: str) -> dict[str, torch.Tensor]:
    try:
        with torch.serialization.safe_globals(_TENSORDICT_NAMES):
            raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign pickles
        raise DatasetError(
            f"{path}: not a readable TD-MPC2 data chunk ({type(err).__name__}: {str(err)[:300]}). "
            "The file is truncated, corrupt, or holds objects other than a TensorDict of tensors."
        ) from err
    tensors = _find_tensors(raw)
    if tensors is None:
        raise DatasetError(f"{path}: no TensorDict with keys {list(_KEYS)} found in the file.")
    obs = tensors["obs"]
    action = tensors["action"]
    leading = (action.shape[:2], tensors["reward"].shape)
    if obs.ndim != 3 or action.ndim != 3 or leading != (obs.shape[:2], obs.shape[:2]):
        raise DatasetError(
            f"{path}: expected obs [E, T + 1, O], action [E, T + 1, A] and reward [E, T + 1]; got "
            f"{tuple(obs.shape)}, {tuple(tensors['action'].shape)} and {tuple(tensors['reward'].shape)}."
        )
    if "task" in tensors and tensors["task"].numel() not in (obs.shape[0], obs.shape[0] * obs.shape[1]):
        raise DatasetError(
            f"{path}: `task` has shape {tuple(tensors['task'].shape)}; expected one id per episode or per step "
            f"of the {obs.shape[0]} episodes of {obs.shape[1]} steps."
        )
    return tensors


def _chunk_files(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"No TD-MPC2 data at {path}: the path does not exist.")
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.pt"))
    if not files:
        raise DatasetError(f"No TD-MPC2 data chunks (*.pt) in {path}.")
    return files


def load_tdmpc2(
    path: str | os.PathLike[str],
    task: str | int | Sequence[str | int] | None = None,
    task_set: str = "mt80",
    trim: bool = True,
    nan_policy: str = "raise",
) -> OfflineDataset:
    """Read TD-MPC2 offline data (one chunk file or a folder of ``*.pt`` chunks).

    :param task: keep only these task(s), by name or id in ``task_set`` (``None``: all).
    :param task_set: ``"mt30"`` or ``"mt80"``: names task ids and the tasks' own dims
        (MT30 ids are the first 30 MT80 ids, so ``"mt80"`` reads both).
    :param trim: with a single task, cut the zero padding down to that task's own
        obs/action dims (so the data fits an agent built for the task's env).
    :param nan_policy: ``"raise"`` or ``"skip"`` for episodes with NaN/inf after the
        (expected) NaN first action and reward.

    Each episode's ``T + 1`` observations become one episode of ``T`` transitions
    (actions and rewards ``1..T``), truncated at the end; ``tasks`` holds its task id.
    """
    if task_set not in TASK_SETS:
        raise ValueError(f"task_set must be one of {sorted(TASK_SETS)}, got {task_set!r}.")
    specs = TASK_SETS[task_set]
    wanted = None
    if task is not None:
        one = isinstance(task, (str, numbers.Integral))
        wanted = [task_id(int(t) if isinstance(t, numbers.Integral) else t, specs) for t in ([task] if one else task)]
    episodes: list[dict[str, Any]] = []
    for file in _chunk_files(Path(path)):
        episodes.extend(_episodes(file, wanted, specs))
    if not episodes:
        raise DatasetError(f"{path}: no episode of task(s) {task!r} in the data.")
    single = wanted is not None and len(wanted) == 1
    if single and trim:
        spec = specs[wanted[0]]  # type: ignore[index]
        dropped = any(
            np.nan_to_num(ep["observations"][:, spec.obs_dim :]).any()
            or np.nan_to_num(ep["actions"][:, spec.action_dim :]).any()
            for ep in episodes
        )
        if dropped:
            warnings.warn(
                f"{path}: trimming to task {spec.name!r}'s own dims (obs {spec.obs_dim}, action {spec.action_dim}) "
                f"drops non-zero values, so these columns are not padding: check task_set={task_set!r}, or pass "
                "trim=False to keep every column.", UserWarning, stacklevel=3,
            )
        for ep in episodes:
            ep["observations"] = ep["observations"][:, : spec.obs_dim]
            ep["actions"] = ep["actions"][:, : spec.action_dim]
    return OfflineDataset.from_episodes(episodes, nan_policy=nan_policy, source=str(path))


def _episodes(file: Path, wanted: list[int] | None, specs: Sequence[TaskSpec]) -> list[dict[str, Any]]:
    tensors = _read_chunk(file, "cpu")
    obs = tensors["obs"].float().numpy()
    action = tensors["action"].float().numpy()
    reward = tensors["reward"].float().numpy()
    if "task" in tensors:
        tasks = tensors["task"].reshape(obs.shape[0], -1)[:, 0].long().numpy()
    else:
        tasks = np.zeros(obs.shape[0], dtype=np.int64)
    unknown = sorted({int(t) for t in tasks} - set(range(len(specs))))
    if unknown:
        raise DatasetError(
            f"{file}: task id(s) {unknown} are not in a task set of {len(specs)} tasks; pass task_set='mt80'."
        )
    out = []
    for e in range(obs.shape[0]):
        if wanted is not None and int(tasks[e]) not in wanted:
            continue
        out.append({
            "observations": obs[e],
            "actions": action[e, 1:],
            "rewards": reward[e, 1:],
            "task": int(tasks[e]),
        })
    return out
