"""In-memory (or memory-mapped) offline dataset of episodes, sampled as windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from gymnasium import spaces

from pwm_agent.buffers import NoValidWindowError, WindowBatch

__all__ = ["DatasetError", "OfflineDataset", "concatenate"]


class DatasetError(ValueError):
    """Raised for data that cannot be used as it is; the message names the fix."""


@dataclass
class OfflineDataset:
    """Episodes stored back to back in flat arrays.

    Episode ``e`` has ``T_e = episode_lengths[e]`` transitions and ``T_e + 1``
    observations. With ``N = sum(T_e)`` and ``E`` episodes:

    - ``observations [N + E, O]``: each episode's ``T_e + 1`` observations in turn;
    - ``actions [N, A]``, ``rewards [N]``, ``terminations [N]``, ``truncations [N]``;
    - ``episode_lengths [E]`` and, for multi-task data, ``tasks [E]`` (task ids).

    Arrays may be ``np.memmap`` views: sampling reads only the rows it gathers, so a
    batch costs the same at any dataset size. Build one with :meth:`from_episodes`
    or the readers in :mod:`pwm_agent.datasets`.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode_lengths: np.ndarray
    tasks: np.ndarray | None = None
    observation_space: spaces.Box | None = None
    action_space: spaces.Box | None = None
    source: str = "<memory>"
    skipped_episodes: int = 0
    _offsets: np.ndarray = field(init=False, repr=False)
    _finite: bool = field(init=False, repr=False, default=False)  # check_finite passed

    def __post_init__(self) -> None:
        self.episode_lengths = np.asarray(self.episode_lengths, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self.episode_lengths)]).astype(np.int64)
        self._check_shapes()

    # ------------------------------------------------------------ construction
    @classmethod
    def from_episodes(
        cls,
        episodes: Iterable[Mapping[str, Any]],
        observation_space: spaces.Box | None = None,
        action_space: spaces.Box | None = None,
        nan_policy: str = "raise",
        source: str = "<memory>",
    ) -> OfflineDataset:
        """Build a dataset from episodes given as arrays.

        Each episode is a mapping with ``observations [T + 1, O]``, ``actions [T, A]``,
        ``rewards [T]`` and optionally ``terminations [T]``, ``truncations [T]``
        (default: truncated at the end) and ``task`` (an int). With
        ``nan_policy="skip"``, episodes holding NaN/inf are dropped and counted in
        ``skipped_episodes``; with ``"raise"`` they are an error.
        """
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}.")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "term", "trunc")}
        lengths, tasks, skipped = [], [], 0
        first: tuple[int, tuple[int, ...]] | None = None  # (episode, obs and action widths)
        for index, episode in enumerate(episodes):
            ep = _episode_arrays(episode, index, source)
            widths = (*ep["obs"].shape[1:], *ep["act"].shape[1:])
            first = first or (index, widths)
            if widths != first[1]:
                raise DatasetError(
                    f"{source}: episode {index} has observation/action widths {widths}, episode {first[0]} had "
                    f"{first[1]}. Episodes of one dataset share their spaces: load one task at a time, or pad "
                    "them to common widths."
                )
            if not all(np.isfinite(ep[k]).all() for k in ("obs", "act", "rew")):
                if nan_policy == "raise":
                    raise DatasetError(
                        f"{source}: episode {index} holds NaN or inf values. Clean the data, or pass "
                        "nan_policy='skip' to drop such episodes (they are counted in `skipped_episodes`)."
                    )
                skipped += 1
                continue
            for key in parts:
                parts[key].append(ep[key])
            lengths.append(len(ep["act"]))
            tasks.append(episode.get("task", -1))
        if not lengths:
            raise DatasetError(f"{source}: no usable episode (read {skipped} with NaN/inf values, skipped).")
        task_array = np.asarray(tasks, dtype=np.int64)
        data = cls(
            observations=np.concatenate(parts["obs"]),
            actions=np.concatenate(parts["act"]),
            rewards=np.concatenate(parts["rew"]),
            terminations=np.concatenate(parts["term"]),
            truncations=np.concatenate(parts["trunc"]),
            episode_lengths=np.asarray(lengths),
            tasks=None if (task_array < 0).all() else task_array,
            observation_space=observation_space,
            action_space=action_space,
            source=source,
            skipped_episodes=skipped,
        )
        data._finite = True  # every kept episode was checked above
        return data

    def _check_shapes(self) -> None:
        n, e = int(self._offsets[-1]), len(self.episode_lengths)
        expected = {
            "observations": (n + e,),
            "actions": (n,),
            "rewards": (n,),
            "terminations": (n,),
            "truncations": (n,),
        }
        for name, lead in expected.items():
            if getattr(self, name).shape[:1] != lead:
                raise DatasetError(
                    f"{self.source}: `{name}` has {getattr(self, name).shape[0]} rows, expected {lead[0]} "
                    f"for {e} episodes of {n} transitions (observations hold T + 1 rows per episode)."
                )
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise DatasetError(
                f"{self.source}: observations must be [N + E, O] and actions [N, A], got "
                f"{self.observations.shape} and {self.actions.shape}."
            )
        if self.tasks is not None and self.tasks.shape != (e,):
            raise DatasetError(f"{self.source}: `tasks` must hold one id per episode ({e}), got {self.tasks.shape}.")
        if (self.episode_lengths < 1).any():
            raise DatasetError(f"{self.source}: episode {int(np.argmin(self.episode_lengths))} has no transition.")
        for name, space, array in (("observation", self.observation_space, self.observations),
                                   ("action", self.action_space, self.actions)):
            if space is not None and int(np.prod(space.shape)) != array.shape[1]:
                raise DatasetError(
                    f"{self.source}: the {name} space {space} holds {int(np.prod(space.shape))} values but the "
                    f"data's {name}s have {array.shape[1]}; give the space of the env the data came from."
                )

    # --------------------------------------------------------------- queries
    @property
    def num_transitions(self) -> int:
        """Total number of transitions ``N``."""
        return int(self._offsets[-1])

    @property
    def num_episodes(self) -> int:
        """Number of episodes ``E``."""
        return len(self.episode_lengths)

    @property
    def observation_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def __len__(self) -> int:
        return self.num_transitions

    def spaces(self) -> tuple[spaces.Box, spaces.Box]:
        """The dataset's spaces; when it has none (TD-MPC2 chunks, padded multi-task data),
        unbounded observations and actions in ``[-1, 1]`` of its dims (TD-MPC2's convention)."""
        obs = self.observation_space or spaces.Box(-np.inf, np.inf, (self.observation_dim,), np.float32)
        act = self.action_space or spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        return obs, act

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, ``[E]``."""
        return np.add.reduceat(np.asarray(self.rewards, dtype=np.float64), self._offsets[:-1])

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """Arrays of episode ``index`` (``observations [T + 1, O]``, ``actions [T, A]``, ...)."""
        start, stop = int(self._offsets[index]), int(self._offsets[index + 1])
        return {
            "observations": np.asarray(self.observations[start + index : stop + index + 1]),
            "actions": np.asarray(self.actions[start:stop]),
            "rewards": np.asarray(self.rewards[start:stop]),
            "terminations": np.asarray(self.terminations[start:stop]),
            "truncations": np.asarray(self.truncations[start:stop]),
        }

    def select(self, episodes: Sequence[int] | np.ndarray) -> OfflineDataset:
        """A new in-memory dataset holding the given episodes (in that order)."""
        chosen = [int(i) for i in episodes]
        eps = [{**self.episode(i), **({"task": int(self.tasks[i])} if self.tasks is not None else {})} for i in chosen]
        return OfflineDataset.from_episodes(eps, self.observation_space, self.action_space, source=self.source)

    def with_task(self, task: int) -> OfflineDataset:
        """The same episodes (arrays shared, not copied) labelled as task ``task``."""
        return OfflineDataset(
            self.observations, self.actions, self.rewards, self.terminations, self.truncations,
            self.episode_lengths, np.full(self.num_episodes, int(task), dtype=np.int64),
            self.observation_space, self.action_space, self.source, self.skipped_episodes,
        )

    def split_episodes(self, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Split episode ids into ``(train, held_out)`` without copying data; ``held_out``
        gets about ``fraction`` of the episodes (at least one; train keeps at least one).
        Pass either to :meth:`sample_windows` as ``episodes``."""
        if not 0.0 < fraction < 1.0 or self.num_episodes < 2:
            raise DatasetError(
                f"Cannot hold out {fraction} of {self.num_episodes} episode(s): a split needs 0 < fraction < 1 "
                "and at least 2 episodes (or pass validation_fraction=0)."
            )
        order = np.random.default_rng(seed).permutation(self.num_episodes)
        n_held = min(max(1, round(fraction * self.num_episodes)), self.num_episodes - 1)
        return np.sort(order[n_held:]), np.sort(order[:n_held])

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise :class:`DatasetError` if the data does not fit an agent with these spaces:
        dims, and actions outside ``action_space``'s bounds."""
        obs_dim, act_dim = int(np.prod(observation_space.shape)), int(np.prod(action_space.shape))
        if (self.observation_dim, self.action_dim) != (obs_dim, act_dim):
            raise DatasetError(
                f"{self.source}: observations have {self.observation_dim} dims and actions {self.action_dim}, "
                f"but the agent expects {obs_dim} and {act_dim}. Use data collected on the agent's env "
                "(with the same wrappers), or build the agent for the dataset's spaces."
            )
        assert isinstance(action_space, spaces.Box)
        self.check_actions(action_space)

    def check_finite(self, chunk: int = 1 << 20) -> None:
        """Raise :class:`DatasetError` naming the first episode with NaN/inf (scanned in chunks,
        so memory-mapped data is checked without loading it). A dataset found clean is not
        scanned again."""
        if self._finite:
            return
        for name in ("observations", "actions", "rewards"):
            array = getattr(self, name)
            for start in range(0, len(array), chunk):
                block = np.asarray(array[start : start + chunk])
                bad = np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))
                if len(bad):
                    row = start + int(bad[0])
                    # observation rows are offset by one per earlier episode
                    bounds = self._offsets + np.arange(len(self._offsets)) if name == "observations" else self._offsets
                    ep = int(np.searchsorted(bounds, row, side="right") - 1)
                    raise DatasetError(
                        f"{self.source}: episode {ep} holds NaN or inf in `{name}`. Clean the data, or load it "
                        "in memory with nan_policy='skip' to drop such episodes."
                    )
        self._finite = True

    def check_actions(self, action_space: spaces.Box, chunk: int = 1 << 20) -> None:
        """Raise if any action lies outside ``action_space`` (checked in chunks)."""
        low, high = action_space.low, action_space.high
        for start in range(0, self.num_transitions, chunk):
            block = np.asarray(self.actions[start : start + chunk])
            bad = np.flatnonzero(((block < low) | (block > high)).any(axis=1))
            if len(bad):
                t = start + int(bad[0])
                ep = int(np.searchsorted(self._offsets, t, side="right") - 1)
                raise DatasetError(
                    f"{self.source}: episode {ep}, step {t - int(self._offsets[ep])}: action "
                    f"{block[bad[0]].tolist()} lies outside the action space [{low.tolist()}, {high.tolist()}]. "
                    "Clip the dataset's actions to the space, or use the env the data was collected on."
                )

    # --------------------------------------------------------------- sampling
    def num_windows(self, horizon: int, episodes: np.ndarray | None = None) -> int:
        """Number of distinct windows of ``horizon`` transitions inside (the given) episodes."""
        lengths = self.episode_lengths if episodes is None else self.episode_lengths[episodes]
        return int(np.maximum(lengths - horizon + 1, 0).sum())

    def sample_windows(
        self,
        batch_size: int,
        horizon: int,
        rng: np.random.Generator,
        device: torch.device | str = "cpu",
        action_space: spaces.Box | None = None,
        episodes: np.ndarray | None = None,
    ) -> WindowBatch:
        """Sample ``batch_size`` windows of ``horizon`` transitions uniformly (see :class:`WindowBatch`).

        Costs ``O(batch_size * horizon + log E)`` whatever the dataset size. With
        ``action_space``, actions are rescaled from its bounds to ``[-1, 1]`` (the
        agent's internal action range, as SB3 stores actions). ``episodes`` restricts
        sampling to those episode ids (a split or a distributed shard).
        """
        ids = np.arange(self.num_episodes) if episodes is None else np.asarray(episodes, dtype=np.int64)
        valid = np.maximum(self.episode_lengths[ids] - horizon + 1, 0)
        cum = np.cumsum(valid)
        if len(cum) == 0 or cum[-1] == 0:
            raise NoValidWindowError(
                f"{self.source}: no episode has {horizon} transitions. Use a shorter horizon or longer episodes."
            )
        draw = rng.integers(0, cum[-1], size=batch_size)
        pos = np.searchsorted(cum, draw, side="right")
        ep = ids[pos]
        t0 = self._offsets[ep] + draw - (cum[pos] - valid[pos])  # first transition, [B]
        steps = np.arange(horizon)[:, None]
        t_idx = t0[None, :] + steps  # [H, B]
        o_idx = np.concatenate([t_idx, t_idx[-1:] + 1]) + ep[None, :]  # [H + 1, B]
        actions = np.asarray(self.actions[t_idx.ravel()], dtype=np.float32).reshape(horizon, batch_size, -1)
        if action_space is not None:
            low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
            actions = 2.0 * (actions - low) / (high - low) - 1.0
        obs = np.asarray(self.observations[o_idx.ravel()], dtype=np.float32).reshape(horizon + 1, batch_size, -1)

        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)

        return WindowBatch(
            observations=put(obs),
            actions=put(actions),
            rewards=put(self.rewards[t_idx]),
            terminated=put(self.terminations[t_idx]),
            truncated=put(self.truncations[t_idx]),
            tasks=None if self.tasks is None else torch.from_numpy(np.asarray(self.tasks)[ep]).to(device),
        )


def _episode_arrays(episode: Mapping[str, Any], index: int, source: str) -> dict[str, np.ndarray]:
    """Validate one episode's arrays and return them as float32/bool arrays."""
    missing = {"observations", "actions", "rewards"} - set(episode)
    if missing:
        raise DatasetError(f"{source}: episode {index} lacks {sorted(missing)}.")
    obs = np.asarray(episode["observations"], dtype=np.float32)
    act = np.asarray(episode["actions"], dtype=np.float32)
    rew = np.asarray(episode["rewards"], dtype=np.float32).reshape(-1)
    obs = obs.reshape(obs.shape[0], -1) if obs.ndim > 1 else obs[:, None]
    act = act.reshape(act.shape[0], -1) if act.ndim > 1 else act[:, None]
    t = len(act)
    if t == 0 or obs.shape[0] != t + 1 or rew.shape[0] != t:
        raise DatasetError(
            f"{source}: episode {index} has {obs.shape[0]} observations, {t} actions and {rew.shape[0]} rewards; "
            "an episode of T steps needs T + 1 observations (including the last) and T actions and rewards (T >= 1)."
        )
    term = np.asarray(episode.get("terminations", np.zeros(t)), dtype=bool).reshape(-1)
    trunc = np.asarray(episode.get("truncations", np.eye(1, t, t - 1)[0]), dtype=bool).reshape(-1)
    if term.shape != (t,) or trunc.shape != (t,):
        raise DatasetError(f"{source}: episode {index}: terminations/truncations must have {t} entries.")
    return {"obs": obs, "act": act, "rew": rew, "term": term, "trunc": trunc}


def _pad(array: np.ndarray, width: int) -> np.ndarray:
    array = np.asarray(array)
    return array if array.shape[1] == width else np.pad(array, ((0, 0), (0, width - array.shape[1])))


def concatenate(datasets: Sequence[OfflineDataset], pad: bool = False) -> OfflineDataset:
    """Join datasets into one (episodes in order); spaces of the first.

    With ``pad=True`` (multi-task data of tasks with different dims) observations and
    actions are zero-padded to the largest dims, as TD-MPC2's multi-task wrapper pads
    them, and the spaces are dropped; otherwise the dims must be equal.
    """
    if not datasets:
        raise DatasetError("concatenate needs at least one dataset.")
    dims = {(d.observation_dim, d.action_dim) for d in datasets}
    if len(dims) > 1 and not pad:
        raise DatasetError(
            f"Cannot concatenate datasets with different (obs, action) dims: {sorted(dims)} "
            "(pass pad=True to zero-pad multi-task data to the largest dims)."
        )
    obs_width, act_width = max(d[0] for d in dims), max(d[1] for d in dims)
    has_tasks = [d.tasks is not None for d in datasets]
    if any(has_tasks) and not all(has_tasks):
        raise DatasetError("Cannot concatenate multi-task and single-task datasets: give every dataset task ids.")
    first = datasets[0]
    return OfflineDataset(
        observations=np.concatenate([_pad(d.observations, obs_width) for d in datasets]),
        actions=np.concatenate([_pad(d.actions, act_width) for d in datasets]),
        rewards=np.concatenate([np.asarray(d.rewards) for d in datasets]),
        terminations=np.concatenate([np.asarray(d.terminations) for d in datasets]),
        truncations=np.concatenate([np.asarray(d.truncations) for d in datasets]),
        episode_lengths=np.concatenate([d.episode_lengths for d in datasets]),
        tasks=np.concatenate([d.tasks for d in datasets]) if all(has_tasks) else None,  # type: ignore[misc]
        observation_space=first.observation_space if len(dims) == 1 else None,
        action_space=first.action_space if len(dims) == 1 else None,
        source="+".join(d.source for d in datasets),
        skipped_episodes=sum(d.skipped_episodes for d in datasets),
    )
