"""Turn an agent's replay buffer (its whole learning history) into an :class:`OfflineDataset`."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from gymnasium import spaces

from pwm_agent.buffers import SequenceReplayBuffer
from pwm_agent.datasets.dataset import OfflineDataset

__all__ = ["from_replay_buffer"]


def _chronological_slots(buffer: SequenceReplayBuffer) -> np.ndarray:
    """Slot indices from the oldest stored transition to the newest."""
    if buffer.full:
        return np.concatenate([np.arange(buffer.pos, buffer.buffer_size), np.arange(buffer.pos)])
    return np.arange(buffer.pos)


def _piece_bounds(chain: np.ndarray) -> Iterator[tuple[int, int]]:
    """``(first, last)`` positions (inclusive) of each run of one episode in ``chain [N]``
    (one env's chain lengths in chronological order; ``-1`` marks an invalid slot)."""
    valid = chain >= 0
    continues = np.zeros_like(valid)
    continues[1:] = valid[1:] & valid[:-1] & (chain[1:] == chain[:-1] + 1)
    starts = np.flatnonzero(valid & ~continues)
    ends = np.flatnonzero(valid & ~np.append(continues[1:], False))
    for start, end in zip(starts, ends):
        yield int(start), int(end)


def _unscale(actions: np.ndarray, action_space: spaces.Box) -> np.ndarray:
    """SB3 stores Box actions rescaled to ``[-1, 1]``; datasets hold env actions."""
    low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
    return (low + 0.5 * (actions + 1.0) * (high - low)).astype(np.float32)


def from_replay_buffer(source: Any, action_space: spaces.Box | None = None) -> OfflineDataset:
    """Episodes stored in a replay buffer, oldest first, as an :class:`OfflineDataset`.

    TD-MPC2's and PWM's multi-task datasets are exactly this: the replay buffers of
    training runs, from the first random steps to the final policy. Use it to keep a
    PWM agent's learning history as offline data::

        agent = PWM("MlpPolicy", "Pendulum-v1").learn(20_000)
        data = datasets.from_replay_buffer(agent)
        datasets.save_minari(data, "data/pendulum-replay-v0", env="Pendulum-v1")

    :param source: a PWM agent (its ``replay_buffer`` and ``action_space`` are used) or a
        :class:`~pwm_agent.buffers.SequenceReplayBuffer`.
    :param action_space: the env's ``Box`` action space (default: the buffer's own), to
        map the actions SB3 stored rescaled to ``[-1, 1]`` back to the env's units.
    :return: one episode per run of consecutive transitions of one env. A run ends with
        the stored termination/truncation, or is marked truncated where the buffer cuts it
        (the write head, a new ``learn()`` call, a skipped non-finite transition); the
        oldest run may start mid-episode once the buffer has wrapped around. Observations
        are the raw ones the env returned (before any ``VecNormalize``), terminal
        observations included.
    """
    buffer = getattr(source, "replay_buffer", source)
    if not isinstance(buffer, SequenceReplayBuffer):
        raise TypeError(
            f"from_replay_buffer needs a PWM agent or a SequenceReplayBuffer, got {type(source).__name__}."
        )
    space = action_space if action_space is not None else buffer.action_space
    if not isinstance(space, spaces.Box):
        raise ValueError(f"Pass the env's Box `action_space`; the buffer's is {space}.")
    slots = _chronological_slots(buffer)
    if slots.size == 0:
        raise ValueError(
            "The replay buffer is empty: train the agent (`learn`) before turning its buffer into a dataset."
        )
    episodes = []
    for env in range(buffer.n_envs):
        for first, last in _piece_bounds(buffer.chain[slots, env]):
            idx = slots[first : last + 1]
            done = buffer.dones[idx, env].astype(bool)
            timeout = buffer.timeouts[idx, env].astype(bool)
            truncated = done & timeout
            truncated[-1] |= not done[-1]  # cut by the buffer: the episode went on
            obs = buffer.observations[idx, env].reshape(len(idx), -1)
            episodes.append({
                "observations": np.concatenate([obs[:1], buffer.next_observations[idx, env].reshape(len(idx), -1)]),
                "actions": _unscale(buffer.actions[idx, env].reshape(len(idx), -1), space),
                "rewards": buffer.rewards[idx, env],
                "terminations": done & ~timeout,
                "truncations": truncated,
            })
    if not episodes:
        raise ValueError(
            "Every transition in the replay buffer was skipped as non-finite (nan_policy='skip'): "
            "fix the env's NaN/inf observations or rewards and collect again."
        )
    obs_dim = episodes[0]["observations"].shape[-1]
    obs_space = buffer.observation_space
    if not (isinstance(obs_space, spaces.Box) and obs_space.shape == (obs_dim,)):
        obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    return OfflineDataset.from_episodes(episodes, obs_space, space, source="<replay buffer>")
