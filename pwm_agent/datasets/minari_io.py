"""Read and write Minari datasets (HDF5 and Arrow backends) without running code from them."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pwm_agent.datasets.arrays import write_arrays
from pwm_agent.datasets.dataset import DatasetError, OfflineDataset
from pwm_agent.envs.wrappers import flat_box, flatten_observation

__all__ = ["check_minari_target", "convert_minari", "load_minari", "resolve_minari_path", "save_minari"]

_INSTALL_HINT = 'Reading and writing Minari datasets needs `pip install "pwm-agent[offline]"` (minari[hdf5,arrow]).'


def _minari() -> Any:
    try:
        import minari
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(_INSTALL_HINT) from err
    return minari


def resolve_minari_path(path_or_id: str | os.PathLike[str]) -> Path:
    """The ``data`` folder of a Minari dataset given by path or by local dataset id.

    A path may name the dataset folder (holding ``data/``) or its ``data`` folder;
    anything else is looked up as an id under ``MINARI_DATASETS_PATH``
    (default ``~/.minari/datasets``).
    """
    candidate = Path(path_or_id).expanduser()
    for folder in (candidate / "data", candidate):
        if (folder / "metadata.json").is_file():
            return folder
    root = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
    by_id = root / str(path_or_id) / "data"
    if (by_id / "metadata.json").is_file():
        return by_id
    raise DatasetError(
        f"No Minari dataset at {str(path_or_id)!r}: neither a folder holding data/metadata.json nor a local "
        f"dataset id under {root}. Check the path, or set MINARI_DATASETS_PATH to the datasets root."
    )


def _read_spaces(data_path: Path) -> dict[str, Any]:
    """Parse ``metadata.json`` and insist that it holds both spaces (otherwise Minari
    would build the env from the file's env spec, which imports code it names)."""
    try:
        metadata = json.loads((data_path / "metadata.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{data_path / 'metadata.json'} is unreadable ({err}); the dataset is corrupt.") from err
    for key in ("observation_space", "action_space", "data_format", "total_episodes", "total_steps"):
        if metadata.get(key) is None:
            raise DatasetError(
                f"{data_path / 'metadata.json'} lacks {key!r}. pwm_agent only reads datasets that store their "
                "spaces (it never instantiates the env named in a file); re-save it with minari >= 0.4."
            )
    return metadata


def _open_minari(path_or_id: str | os.PathLike[str]) -> tuple[Any, Path, dict[str, Any], spaces.Box]:
    """Open a Minari dataset's storage; returns it with its data path, metadata and flat obs space."""
    minari = _minari()
    data_path = resolve_minari_path(path_or_id)
    metadata = _read_spaces(data_path)
    try:
        storage = minari.dataset.minari_storage.MinariStorage.read(data_path)
    except (OSError, ValueError, KeyError, ImportError, AssertionError, TypeError) as err:
        detail = str(err) or f"{type(err).__name__} in Minari's reader (damaged metadata.json?)"
        raise DatasetError(f"Cannot open the Minari dataset at {data_path}: {detail}") from err
    obs_space, act_space = storage.observation_space, storage.action_space
    if not isinstance(act_space, spaces.Box):
        raise DatasetError(f"{data_path}: action space {act_space} is not a Box; PWM needs continuous actions.")
    flat_obs_space = flat_box(obs_space) if isinstance(obs_space, spaces.Dict) else obs_space
    if not isinstance(flat_obs_space, spaces.Box):
        raise DatasetError(f"{data_path}: observation space {obs_space} is not a Box or a Dict of Boxes.")
    return storage, data_path, metadata, flat_obs_space


def _count(metadata: dict[str, Any], key: str, data_path: Path) -> int:
    """A non-negative integer entry of a Minari ``metadata.json``, or a named error."""
    try:
        value = int(metadata[key])
    except (KeyError, TypeError, ValueError):
        value = -1
    if value < 0:
        raise DatasetError(f"{data_path}/metadata.json: `{key}` is missing or not a count "
                           f"({metadata.get(key)!r}); the dataset's metadata is damaged.")
    return value


def load_minari(
    path_or_id: str | os.PathLike[str], nan_policy: str = "raise", chunk_episodes: int = 1000
) -> OfflineDataset:
    """Read a local Minari dataset (by path or id) into memory as an :class:`OfflineDataset`.

    ``Dict`` observations are flattened in the space's key order (as
    ``"MultiInputPolicy"`` does); actions must be a ``Box``. For datasets larger
    than memory use :func:`convert_minari` once, then load the converted folder.
    """
    storage, data_path, metadata, obs_space = _open_minari(path_or_id)
    total = _count(metadata, "total_episodes", data_path)
    episodes = _read_episodes(storage, total, storage.observation_space, data_path, chunk_episodes)
    return OfflineDataset.from_episodes(episodes, obs_space, storage.action_space, nan_policy, source=str(data_path))


def convert_minari(
    path_or_id: str | os.PathLike[str], out: str | os.PathLike[str], chunk_episodes: int = 100
) -> Path:
    """Stream a Minari dataset into a memory-mappable array folder (see
    :mod:`pwm_agent.datasets.arrays`), a chunk of episodes at a time.

    Memory stays bounded by one chunk, so datasets larger than memory convert; the
    result loads instantly with :func:`pwm_agent.datasets.load` and samples at a
    cost independent of its size. Episodes with NaN/inf are an error here.
    """
    storage, data_path, metadata, obs_space = _open_minari(path_or_id)
    total = _count(metadata, "total_episodes", data_path)
    sizes = (_count(metadata, "total_steps", data_path), total, int(np.prod(obs_space.shape)),
             int(np.prod(storage.action_space.shape)))

    def checked() -> Iterator[dict[str, Any]]:
        for index, ep in enumerate(_read_episodes(storage, total, storage.observation_space, data_path, chunk_episodes)):
            if not all(np.isfinite(np.asarray(ep[k], dtype=np.float64)).all() for k in ("observations", "actions", "rewards")):
                raise DatasetError(f"{data_path}: episode {index} holds NaN or inf values. Clean the data first.")
            yield ep

    meta = {"source": str(data_path), "observation_space": obs_space, "action_space": storage.action_space}
    return write_arrays(out, sizes, checked(), meta)


def _read_episodes(
    storage: Any, total: int, obs_space: spaces.Space, data_path: Path, chunk: int
) -> Iterator[dict[str, Any]]:
    for start in range(0, total, chunk):
        indices = range(start, min(start + chunk, total))
        try:
            for ep in storage.get_episodes(indices):
                obs = ep["observations"]
                if isinstance(obs_space, spaces.Dict):
                    obs = flatten_observation(obs_space, obs, batched=True)
                yield {
                    "observations": obs,
                    "actions": ep["actions"],
                    "rewards": ep["rewards"],
                    "terminations": ep["terminations"],
                    "truncations": ep["truncations"],
                }
        except (OSError, KeyError, ValueError, RuntimeError) as err:
            raise DatasetError(
                f"{data_path}: episodes {indices.start}..{indices.stop - 1} are unreadable ({err}); the file is "
                "truncated or corrupt. Re-download or re-collect the dataset."
            ) from err


@contextmanager
def _datasets_root(root: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def check_minari_target(path: str | os.PathLike[str]) -> Path:
    """The resolved folder for a new Minari dataset, or an error naming the fix: the folder
    must not exist (datasets are immutable) and its name, the dataset id, ends in a version."""
    target = Path(path).expanduser().resolve()
    if target.exists():
        raise FileExistsError(f"{target} exists; Minari datasets are immutable. Choose another path or delete it.")
    if not re.fullmatch(r"[\w.-]+-v\d+", target.name):
        raise ValueError(
            f"The folder name {target.name!r} is the Minari dataset id, which must end in a version, "
            f"e.g. {target.name}-v0 (letters, digits, '_', '.', '-')."
        )
    return target


def save_minari(
    dataset: OfflineDataset,
    path: str | os.PathLike[str],
    env: str | gym.Env | None = None,
    data_format: str = "hdf5",
    algorithm_name: str | None = None,
    description: str | None = None,
) -> Path:
    """Write ``dataset`` as a Minari dataset in folder ``path`` (``data_format``
    ``"hdf5"`` or ``"arrow"``); the folder name is the dataset id.

    The write is atomic: the dataset is built in a temporary folder beside
    ``path`` and moved into place, so a crash never leaves a partial dataset.
    ``env`` (id or env) records the env spec; spaces come from the dataset.
    """
    minari = _minari()
    from minari.data_collector.episode_buffer import EpisodeBuffer

    target = check_minari_target(path)
    if dataset.observation_space is None or dataset.action_space is None:
        raise DatasetError("The dataset has no spaces: build it with observation_space and action_space.")
    dataset.check_finite()
    buffers = []
    for index in range(dataset.num_episodes):
        ep = dataset.episode(index)
        buffers.append(
            EpisodeBuffer(
                id=index,
                observations=ep["observations"],
                actions=ep["actions"],
                rewards=ep["rewards"].astype(np.float64).tolist(),
                terminations=ep["terminations"].tolist(),
                truncations=ep["truncations"].tolist(),
                infos={},
            )
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=".minari-", dir=target.parent))
    try:
        with _datasets_root(tmp_root), warnings.catch_warnings():
            # Minari's advice on optional metadata (author, eval env, ...) is noise here.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
            minari.create_dataset_from_buffers(
                target.name,
                buffers,
                env=env,
                algorithm_name=algorithm_name,
                observation_space=dataset.observation_space,
                action_space=dataset.action_space,
                description=description,
                data_format=data_format,
            )
        os.replace(tmp_root / target.name, target)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return target
