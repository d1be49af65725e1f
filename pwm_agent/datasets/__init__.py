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

from pwm_agent.datasets.arrays import is_array_dataset, load_arrays, save_arrays
from pwm_agent.datasets.collect import collect
from pwm_agent.datasets.dataset import DatasetError, OfflineDataset, concatenate
from pwm_agent.datasets.minari_io import convert_minari, load_minari, save_minari

__all__ = [
    "DatasetError",
    "OfflineDataset",
    "collect",
    "concatenate",
    "convert_minari",
    "load",
    "load_arrays",
    "load_minari",
    "save_arrays",
    "save_minari",
]


def load(path_or_id: str | os.PathLike[str], nan_policy: str = "raise") -> OfflineDataset:
    """Load a dataset: an array folder of :func:`save_arrays` / :func:`convert_minari`
    (memory-mapped, checked for NaN/inf chunk by chunk), or a local Minari dataset
    (HDF5 or Arrow) by folder path or dataset id (read into memory).

    :param nan_policy: for Minari data, ``"raise"`` on an episode holding NaN/inf, or
        ``"skip"`` to drop such episodes (counted in ``skipped_episodes`` and logged by
        the agent). Array folders always raise.
    """
    if is_array_dataset(path_or_id):
        data = load_arrays(path_or_id)
        data.check_finite()
        return data
    return load_minari(path_or_id, nan_policy=nan_policy)
