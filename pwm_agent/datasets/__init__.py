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

from pwm_agent.datasets.collect import collect
from pwm_agent.datasets.dataset import DatasetError, OfflineDataset, concatenate
from pwm_agent.datasets.minari_io import load_minari, save_minari

__all__ = ["DatasetError", "OfflineDataset", "collect", "concatenate", "load", "load_minari", "save_minari"]


def load(path_or_id: str | os.PathLike[str], nan_policy: str = "raise") -> OfflineDataset:
    """Load a local Minari dataset (HDF5 or Arrow) by folder path or dataset id.

    :param nan_policy: ``"raise"`` on an episode holding NaN/inf, or ``"skip"`` to drop
        such episodes (counted in ``skipped_episodes`` and logged by the agent).
    """
    return load_minari(path_or_id, nan_policy=nan_policy)
