"""A memory-mappable on-disk dataset format: one ``.npy`` file per array plus JSON metadata.

Layout of a folder::

    pwm_dataset.json      format version, counts, spaces, source
    observations.npy      [N + E, O] float32
    actions.npy           [N, A] float32
    rewards.npy           [N] float32
    terminations.npy      [N] bool
    truncations.npy       [N] bool
    episode_lengths.npy   [E] int64
    tasks.npy             [E] int64 (multi-task data only)

Files are opened with ``np.load(mmap_mode="r", allow_pickle=False)``: nothing is
unpickled, and sampling reads only the rows it gathers, so datasets larger than
memory work and a batch costs the same at any size. Storage is the raw array bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pwm_agent.common.spaces_json import space_from_dict, space_to_dict
from pwm_agent.datasets.dataset import DatasetError, OfflineDataset

__all__ = ["FORMAT_FILE", "is_array_dataset", "load_arrays", "save_arrays", "write_arrays"]

FORMAT_FILE = "pwm_dataset.json"
FORMAT_VERSION = 1
_ARRAYS = ("observations", "actions", "rewards", "terminations", "truncations", "episode_lengths")


def is_array_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by :func:`save_arrays`."""
    return (Path(path) / FORMAT_FILE).is_file()


def save_arrays(dataset: OfflineDataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` to folder ``path`` (atomically: built beside it, then moved).
    Data with NaN/inf raises :class:`DatasetError` (the folder would not load)."""
    dataset.check_finite()
    sizes = (dataset.num_transitions, dataset.num_episodes, dataset.observation_dim, dataset.action_dim)

    def episodes() -> Iterator[dict[str, Any]]:
        for index in range(dataset.num_episodes):
            ep = dataset.episode(index)
            if dataset.tasks is not None:
                ep["task"] = int(dataset.tasks[index])
            yield ep

    meta = {"source": dataset.source, "observation_space": dataset.observation_space,
            "action_space": dataset.action_space, "multitask": dataset.tasks is not None}
    return write_arrays(path, sizes, episodes(), meta)


def write_arrays(
    path: str | os.PathLike[str],
    sizes: tuple[int, int, int, int],
    episodes: Iterator[dict[str, Any]],
    meta: dict[str, Any],
) -> Path:
    """Stream ``episodes`` into a new array folder without holding them all in memory.

    ``sizes`` is ``(transitions, episodes, obs_dim, action_dim)``, known in advance
    (e.g. from a Minari file's metadata); the episodes must add up to it.
    """
    target = Path(path).expanduser().resolve()
    if target.exists():
        raise FileExistsError(f"{target} exists: choose another folder or delete it.")
    n, e, obs_dim, act_dim = sizes
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pwm-dataset-", dir=target.parent))
    try:
        arrays = {
            "observations": _open(tmp, "observations", (n + e, obs_dim), np.float32),
            "actions": _open(tmp, "actions", (n, act_dim), np.float32),
            "rewards": _open(tmp, "rewards", (n,), np.float32),
            "terminations": _open(tmp, "terminations", (n,), np.bool_),
            "truncations": _open(tmp, "truncations", (n,), np.bool_),
        }
        lengths, tasks = _fill(arrays, episodes, sizes)
        for array in arrays.values():
            array.flush()
        np.save(tmp / "episode_lengths.npy", np.asarray(lengths, dtype=np.int64))
        if meta.get("multitask"):
            np.save(tmp / "tasks.npy", np.asarray(tasks, dtype=np.int64))
        spaces_json = {k: space_to_dict(meta[k]) if meta.get(k) is not None else None
                       for k in ("observation_space", "action_space")}
        info = {"format": "pwm_agent.datasets", "version": FORMAT_VERSION, "transitions": n, "episodes": e,
                "source": meta.get("source", ""), **spaces_json}
        (tmp / FORMAT_FILE).write_text(json.dumps(info, indent=1))
        del arrays
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _open(folder: Path, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
    return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)


def _fill(
    arrays: dict[str, np.memmap], episodes: Iterator[dict[str, Any]], sizes: tuple[int, int, int, int]
) -> tuple[list[int], list[int]]:
    n, e = sizes[0], sizes[1]
    t = o = 0
    lengths, tasks = [], []
    for ep in episodes:
        steps = len(ep["actions"])
        if t + steps > n or len(lengths) >= e:
            raise DatasetError(f"The episodes hold more than the announced {n} transitions / {e} episodes.")
        arrays["observations"][o : o + steps + 1] = ep["observations"]
        arrays["actions"][t : t + steps] = ep["actions"]
        arrays["rewards"][t : t + steps] = ep["rewards"]
        arrays["terminations"][t : t + steps] = ep["terminations"]
        arrays["truncations"][t : t + steps] = ep["truncations"]
        lengths.append(steps)
        tasks.append(int(ep.get("task", -1)))
        t, o = t + steps, o + steps + 1
    if (t, len(lengths)) != (n, e):
        raise DatasetError(f"The episodes hold {t} transitions / {len(lengths)} episodes, announced {n} / {e}.")
    return lengths, tasks


def load_arrays(path: str | os.PathLike[str], mmap: bool = True) -> OfflineDataset:
    """Open an array folder; with ``mmap`` the arrays stay on disk (read on demand)."""
    folder = Path(path)
    try:
        info = json.loads((folder / FORMAT_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{folder / FORMAT_FILE} is unreadable ({err}).") from err
    if not isinstance(info, dict):
        raise DatasetError(f"{folder / FORMAT_FILE} must hold a JSON object; the file is damaged. Re-create the dataset.")
    if info.get("format") != "pwm_agent.datasets" or info.get("version") != FORMAT_VERSION:
        raise DatasetError(f"{folder} is not a pwm_agent dataset of format version {FORMAT_VERSION}.")
    names = list(_ARRAYS) + (["tasks"] if (folder / "tasks.npy").is_file() else [])
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.load(folder / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DatasetError(
                f"{folder / (name + '.npy')} is missing, truncated or corrupt ({err}). Re-create the dataset."
            ) from err
    try:
        spaces = {k: space_from_dict(info[k]) if info.get(k) else None for k in ("observation_space", "action_space")}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DatasetError(
            f"{folder / FORMAT_FILE}: a space description is damaged ({type(err).__name__}: {err}). Re-create the "
            "dataset, or fix the file's observation_space/action_space entries."
        ) from err
    return OfflineDataset(
        observations=arrays["observations"], actions=arrays["actions"], rewards=arrays["rewards"],
        terminations=arrays["terminations"], truncations=arrays["truncations"],
        episode_lengths=np.asarray(arrays["episode_lengths"]), tasks=arrays.get("tasks"),
        source=str(folder), **spaces,  # type: ignore[arg-type]
    )
