"""Offline data: datasets of episodes, Minari reading/writing and collection.

Typical use::

    from pwm_agent import datasets
    data = datasets.concatenate([
        datasets.collect("Pendulum-v1", "random", 20_000, seed=0),
        datasets.collect("Pendulum-v1", agent, 30_000, seed=1),
    ])
    datasets.save_minari(data, "data/pendulum-mixed-v0", env="Pendulum-v1")
    data = datasets.load("data/pendulum-mixed-v0")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from pwm_agent.datasets.arrays import is_array_dataset, load_arrays, save_arrays
from pwm_agent.datasets.collect import collect
from pwm_agent.datasets.dataset import DatasetError, OfflineDataset, concatenate
from pwm_agent.datasets.minari_io import convert_minari, load_minari, save_minari
from pwm_agent.datasets.replay import from_replay_buffer
from pwm_agent.datasets.tdmpc2_io import load_tdmpc2

__all__ = [
    "DatasetError",
    "OfflineDataset",
    "collect",
    "concatenate",
    "convert_minari",
    "from_replay_buffer",
    "load",
    "load_arrays",
    "load_minari",
    "load_tdmpc2",
    "save_arrays",
    "save_minari",
]


def load(
    path_or_id: str | os.PathLike[str],
    task: str | int | Sequence[str | int] | None = None,
    task_set: str = "mt80",
    nan_policy: str = "raise",
) -> OfflineDataset:
    """Load a dataset, whichever of the supported formats it is:

    - an array folder of :func:`save_arrays` / :func:`convert_minari` (memory-mapped,
      checked for NaN/inf chunk by chunk);
    - TD-MPC2 offline data: a ``.pt`` chunk or a folder of them (:func:`load_tdmpc2`;
      ``task`` selects tasks by name or id of ``task_set``);
    - a local Minari dataset (HDF5 or Arrow) by folder path or dataset id.

    :param nan_policy: ``"raise"`` on an episode holding NaN/inf, or ``"skip"`` to drop
        such episodes (counted in ``skipped_episodes`` and logged by the agent); array
        folders always raise.
    """
    path = Path(path_or_id)
    if task is not None and not path.exists():
        raise FileNotFoundError(f"No dataset at {path}: the path does not exist.")
    if task is not None and not (path.suffix == ".pt" or (path.is_dir() and any(path.glob("*.pt")))):
        raise ValueError("`task` selects tasks of TD-MPC2 data only; this is not a TD-MPC2 chunk or folder.")
    if is_array_dataset(path):
        data = load_arrays(path)
        data.check_finite()
        return data
    if path.suffix == ".pt" or (path.is_dir() and any(path.glob("*.pt"))):
        return load_tdmpc2(path, task, task_set, nan_policy=nan_policy)
    return load_minari(path_or_id, nan_policy=nan_policy)
