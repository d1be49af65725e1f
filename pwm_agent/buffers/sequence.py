"""Replay buffer that samples ``H + 1``-step windows inside episodes."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

__all__ = ["NoValidWindowError", "SequenceReplayBuffer", "WindowBatch"]


class WindowBatch(NamedTuple):
    """A batch of windows, time-major.

    ``observations [H + 1, B, O]``, ``actions [H, B, A]``, ``rewards [H, B]``,
    ``terminated [H, B]`` and ``truncated [H, B]`` (floats, 1.0 where true), and for
    multi-task data the task id of each window, ``tasks [B]`` (``None`` otherwise).
    ``mask [H, B]`` (``None``: every step is real) is 1.0 for the steps of a window
    that lie inside its episode and 0.0 for steps past the episode's last transition
    (windows that may run past an episode's end, see ``partial_windows``); masked
    steps repeat the last real observation and action and have zero reward and flags.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    tasks: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class NoValidWindowError(RuntimeError):
    """Raised when the buffer holds no window of the requested length yet."""


class SequenceReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` that also samples windows of consecutive transitions.

    A window of horizon ``H`` starting at slot ``s`` of env ``e`` holds the
    transitions ``s .. s + H - 1`` of that env. It never crosses an episode
    boundary (termination, truncation, a skipped invalid transition or a new
    ``learn()`` call) nor the write head; only its last transition may end the
    episode. Observations come from ``observations[s]`` followed by
    ``next_observations[s .. s + H - 1]``, so a terminal observation is the real
    one, not the next episode's reset observation. A consequence: the last
    ``H - 1`` steps of an episode appear in fewer windows than the others, and
    episodes shorter than ``H`` in none (use a short ``horizon`` on tasks with
    very short episodes).

    With ``partial_windows=True`` a window may instead start at any stored transition
    and run past its episode's end (or the write head): the steps beyond are masked
    (``WindowBatch.mask``). Every transition is then a start state equally often and
    the last steps of episodes (the states right before a fall, in episodic tasks)
    are trained on as much as the others.

    Storage: ``chain[i, e]`` is the number of transitions of the same episode
    stored right before slot ``i`` (``-1`` for an empty or invalid slot), so a
    window ending at ``i`` is inside one episode iff ``chain[i, e] >= H - 1``.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        partial_windows: bool = False,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError(
                "SequenceReplayBuffer needs the stored next observations (terminal observations of "
                "episodes); use optimize_memory_usage=False."
            )
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination
        )
        self.chain = np.full((self.buffer_size, self.n_envs), -1, dtype=np.int64)
        self._continues = np.zeros(self.n_envs, dtype=bool)
        self.partial_windows = partial_windows

    def mark_episode_boundary(self) -> None:
        """Make the next stored transition of every env start a new chain.

        Called at the start of each ``learn()`` so that windows never stitch the
        last transition of one call to the first of the next.
        """
        self._continues[:] = False

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        valid: np.ndarray | None = None,
    ) -> None:
        """Store one transition per env; ``valid [n_envs]`` False marks a skipped one.

        Invalid transitions are stored (with their arrays as given) but are never
        part of a window and cut the episode chain.
        """
        valid = np.ones(self.n_envs, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        prev = self.chain[(self.pos - 1) % self.buffer_size]
        self.chain[self.pos] = np.where(valid, np.where(self._continues & (prev >= 0), prev + 1, 0), -1)
        self._continues = valid & ~np.asarray(done, dtype=bool).reshape(self.n_envs)
        super().add(obs, next_obs, action, reward, done, infos)

    def _steps_before_head(self, starts: np.ndarray) -> np.ndarray:
        """``[N]``: how many stored transitions there are from each start slot to the newest."""
        if self.full:
            return self.buffer_size - (starts - self.pos) % self.buffer_size
        return self.pos - starts

    def _window_starts_valid(self, starts: np.ndarray, envs: np.ndarray, horizon: int, partial: bool) -> np.ndarray:
        """Boolean mask ``[N]``: whether each (start slot, env) opens a valid window
        (``partial``: one that may run past its episode's end)."""
        if partial:
            return self.chain[starts, envs] >= 0
        ends = (starts + horizon - 1) % self.buffer_size
        in_episode = self.chain[ends, envs] >= horizon - 1
        if self.full:
            # Every slot from the oldest (``pos``) onward must be older than the next.
            before_head = (starts - self.pos) % self.buffer_size <= self.buffer_size - horizon
        else:
            before_head = starts + horizon <= self.pos
        return in_episode & before_head

    def num_valid_windows(self, horizon: int) -> int:
        """Exact number of valid windows of ``horizon`` steps (O(buffer size))."""
        size = self.buffer_size if self.full else self.pos
        starts = np.repeat(np.arange(size), self.n_envs)
        envs = np.tile(np.arange(self.n_envs), size)
        return int(self._window_starts_valid(starts, envs, horizon, self.partial_windows).sum())

    def _draw_window_starts(self, batch_size: int, horizon: int, partial: bool) -> tuple[np.ndarray, np.ndarray]:
        """Uniformly draw valid (start, env) pairs by rejection, falling back to enumeration."""
        size = self.buffer_size if self.full else self.pos
        if size == 0:
            raise NoValidWindowError("The replay buffer is empty: collect transitions before sampling windows.")
        starts_found: list[np.ndarray] = []
        envs_found: list[np.ndarray] = []
        needed = batch_size
        for _ in range(8):
            starts = np.random.randint(0, size, size=2 * needed + 8)
            envs = np.random.randint(0, self.n_envs, size=starts.shape[0])
            ok = self._window_starts_valid(starts, envs, horizon, partial)
            starts_found.append(starts[ok][:needed])
            envs_found.append(envs[ok][:needed])
            needed -= len(starts_found[-1])
            if needed == 0:
                return np.concatenate(starts_found), np.concatenate(envs_found)
        all_starts = np.repeat(np.arange(size), self.n_envs)
        all_envs = np.tile(np.arange(self.n_envs), size)
        ok = np.flatnonzero(self._window_starts_valid(all_starts, all_envs, horizon, partial))
        if ok.size == 0:
            raise NoValidWindowError(
                f"The replay buffer holds no window of {horizon} consecutive transitions inside one "
                "episode. Collect more steps (raise `learning_starts`) or lower `horizon` below the "
                "typical episode length."
            )
        pick = ok[np.random.randint(0, ok.size, size=batch_size)]
        return all_starts[pick], all_envs[pick]

    def sample_windows(
        self, batch_size: int, horizon: int, env: VecNormalize | None = None, partial: bool | None = None
    ) -> WindowBatch:
        """Sample ``batch_size`` windows of ``horizon`` transitions (see :class:`WindowBatch`).

        Observations and rewards are normalised with ``env`` when it is a
        ``VecNormalize``, as SB3's ``sample`` does. ``partial`` overrides the
        buffer's ``partial_windows`` for this call.
        """
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}.")
        partial = self.partial_windows if partial is None else partial
        starts, envs = self._draw_window_starts(batch_size, horizon, partial)
        steps = np.arange(horizon)[:, None]
        mask = None
        if partial:
            # Steps of the same episode: the chain grows by one per slot, up to the head.
            slots = (starts[None, :] + steps) % self.buffer_size
            same = (self.chain[slots, envs] == self.chain[starts, envs] + steps) & (
                steps < self._steps_before_head(starts)
            )
            inside = np.cumprod(same, axis=0).astype(bool)  # [H, B]
            last = inside.sum(0) - 1  # the start itself is always inside
            steps = np.minimum(steps, last)  # masked steps repeat the last real transition
            mask = inside.astype(np.float32)
        slots = (starts[None, :] + steps) % self.buffer_size  # [H, B]
        obs = np.concatenate([self.observations[starts, envs][None], self.next_observations[slots, envs]], axis=0)
        dones = self.dones[slots, envs]
        timeouts = self.timeouts[slots, envs]
        rewards = self._normalize_reward(self.rewards[slots, envs], env)
        if mask is not None:
            dones, rewards = dones * mask, rewards * mask
        return WindowBatch(
            observations=self.to_torch(self._normalize_obs(obs, env)),
            actions=self.to_torch(self.actions[slots, envs]),
            rewards=self.to_torch(rewards),
            terminated=self.to_torch(dones * (1.0 - timeouts)),
            truncated=self.to_torch(dones * timeouts),
            mask=None if mask is None else self.to_torch(mask),
        )

    def to_torch(self, array: np.ndarray, copy: bool = True) -> torch.Tensor:
        """Float32 tensor on the buffer's device.

        For a CUDA device the host copy is pinned and sent asynchronously, so
        sampling never waits for the GPU to finish queued work.
        """
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)
