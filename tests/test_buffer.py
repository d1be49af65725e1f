"""SequenceReplayBuffer invariants, checked against a brute-force reference (property-based)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import gymnasium as gym
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwm_agent import PWM
from pwm_agent.buffers import NoValidWindowError, SequenceReplayBuffer

from conftest import CounterEnv, tiny_kwargs

OBS_SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT_SPACE = spaces.Box(-1e6, 1e6, (1,), np.float32)

# Per env and step: what happens to the transition (mostly ordinary steps, so windows exist).
KINDS = ["ok"] * 8 + ["terminated", "truncated", "invalid"]
BOUNDARY = "boundary"  # a mark_episode_boundary() call between two adds


@dataclass
class Transition:
    step: int  # global add counter
    kind: str
    segment: int  # episode chain id; -1 for invalid transitions


def fill(buffer: SequenceReplayBuffer, ops: list) -> list[list[Transition]]:
    """Apply ``ops`` to ``buffer``; return every transition ever added, per env, in order.

    Transition ``g`` of env ``e`` stores ``obs = [e, g, 0]``, ``next_obs = [e, g, 1]``,
    ``action = [g]``, ``reward = g + e / 10``.
    """
    n_envs = buffer.n_envs
    history: list[list[Transition]] = [[] for _ in range(n_envs)]
    new_segment = [True] * n_envs
    current = [-1] * n_envs
    next_segment = 0
    step = 0
    for op in ops:
        if op == BOUNDARY:
            buffer.mark_episode_boundary()
            new_segment = [True] * n_envs
            continue
        kinds = op
        envs = np.arange(n_envs, dtype=np.float32)
        obs = np.stack([envs, np.full(n_envs, step), np.zeros(n_envs)], axis=1).astype(np.float32)
        next_obs = obs.copy()
        next_obs[:, 2] = 1.0
        actions = np.full((n_envs, 1), step, np.float32)
        rewards = (step + envs / 10).astype(np.float32)
        dones = np.array([k in ("terminated", "truncated") for k in kinds])
        valid = np.array([k != "invalid" for k in kinds])
        infos = [{"TimeLimit.truncated": True} if k == "truncated" else {} for k in kinds]
        buffer.add(obs, next_obs, actions, rewards, dones, infos, valid=valid)
        for e, kind in enumerate(kinds):
            if kind == "invalid":
                history[e].append(Transition(step, kind, -1))
                new_segment[e] = True
                continue
            if new_segment[e]:
                next_segment += 1
                current[e] = next_segment
                new_segment[e] = False
            history[e].append(Transition(step, kind, current[e]))
            if kind in ("terminated", "truncated"):
                new_segment[e] = True
        step += 1
    return history


def reference_windows(history: list[list[Transition]], capacity: int, horizon: int) -> set[tuple[int, int]]:
    """Brute force: ``(env, first step)`` of every window of ``horizon`` stored transitions inside one
    episode chain, none invalid, none ending the episode except the last."""
    windows = set()
    for e, transitions in enumerate(history):
        stored = transitions[-capacity:]
        for i in range(len(stored) - horizon + 1):
            window = stored[i : i + horizon]
            if any(t.segment < 0 for t in window):
                continue
            if len({t.segment for t in window}) != 1:
                continue
            if any(t.kind in ("terminated", "truncated") for t in window[:-1]):
                continue
            windows.add((e, window[0].step))
    return windows


def check_batch(batch, history: list[list[Transition]], valid: set[tuple[int, int]], horizon: int) -> set:
    """Every sampled window is a valid reference window with exactly the stored data."""
    obs = batch.observations.numpy()
    acts, rews = batch.actions.numpy(), batch.rewards.numpy()
    term, trunc = batch.terminated.numpy(), batch.truncated.numpy()
    n = obs.shape[1]
    assert obs.shape == (horizon + 1, n, 3)
    assert acts.shape == (horizon, n, 1) and rews.shape == term.shape == trunc.shape == (horizon, n)
    seen = set()
    for b in range(n):
        e, g0 = int(obs[0, b, 0]), int(obs[0, b, 1])
        assert (e, g0) in valid, f"window (env {e}, step {g0}) is not a valid window"
        seen.add((e, g0))
        np.testing.assert_array_equal(obs[0, b], [e, g0, 0])
        steps = g0 + np.arange(horizon)
        np.testing.assert_array_equal(obs[1:, b, 0], e)
        np.testing.assert_array_equal(obs[1:, b, 1], steps)  # consecutive, one env
        np.testing.assert_array_equal(obs[1:, b, 2], 1.0)  # next observations, never a reset one
        np.testing.assert_array_equal(acts[:, b, 0], steps)
        np.testing.assert_allclose(rews[:, b], steps + e / 10, rtol=1e-6)
        kinds = {t.step: t.kind for t in history[e]}
        np.testing.assert_array_equal(term[:, b], [kinds[int(s)] == "terminated" for s in steps])
        np.testing.assert_array_equal(trunc[:, b], [kinds[int(s)] == "truncated" for s in steps])
        assert term[:-1, b].sum() == 0 and trunc[:-1, b].sum() == 0, "only the last step may be done"
        assert all(kinds[int(s)] != "invalid" for s in steps)
    return seen


def ops_strategy(n_envs: int, max_steps: int = 40):
    step = st.lists(st.sampled_from(KINDS), min_size=n_envs, max_size=n_envs)
    op = st.one_of(step, step, step, step, step, step, st.just(BOUNDARY))
    return st.lists(op, min_size=0, max_size=max_steps)


@st.composite
def buffer_cases(draw):
    n_envs = draw(st.integers(1, 3))
    capacity = draw(st.integers(2, 12))  # per env; small so the buffer wraps around
    horizon = draw(st.integers(1, 5))
    ops = draw(ops_strategy(n_envs))
    return n_envs, capacity, horizon, ops


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buffer_cases())
def test_windows_match_brute_force(case):
    n_envs, capacity, horizon, ops = case
    buffer = SequenceReplayBuffer(capacity * n_envs, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=n_envs)
    history = fill(buffer, ops)
    n_adds = sum(1 for op in ops if op != BOUNDARY)
    assert buffer.pos == n_adds % capacity and buffer.full == (n_adds >= capacity)
    valid = reference_windows(history, capacity, horizon)
    assert buffer.num_valid_windows(horizon) == len(valid)
    if n_adds == 0:
        return  # an empty buffer: see test_empty_buffer_raises_no_valid_window
    if not valid:
        with pytest.raises(NoValidWindowError, match="raise `learning_starts`"):
            buffer.sample_windows(4, horizon)
        return
    np.random.seed(len(ops))
    batch_size = 40 * len(valid)
    seen = check_batch(buffer.sample_windows(batch_size, horizon), history, valid, horizon)
    # Sampling is uniform over valid windows: with 40 draws per window, all are drawn.
    assert seen == valid


def test_wraparound_never_crosses_write_head():
    """A full buffer whose newest and oldest slots are adjacent: no window joins them."""
    buffer = SequenceReplayBuffer(6, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=1)
    history = fill(buffer, [["ok"]] * 9)  # slots hold steps 6, 7, 8, 3, 4, 5 ; head at slot 3
    assert buffer.full and buffer.pos == 3
    valid = reference_windows(history, 6, 3)
    assert valid == {(0, 3), (0, 4), (0, 5), (0, 6)}
    assert buffer.num_valid_windows(3) == 4
    np.random.seed(0)
    assert check_batch(buffer.sample_windows(200, 3), history, valid, 3) == valid
    assert buffer.num_valid_windows(6) == 1
    assert buffer.num_valid_windows(7) == 0


def test_mark_episode_boundary():
    buffer = SequenceReplayBuffer(40, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=2)
    history = fill(buffer, [["ok", "ok"]] * 5 + [BOUNDARY] + [["ok", "ok"]] * 5)
    assert buffer.num_valid_windows(5) == 2 * 2
    assert buffer.num_valid_windows(6) == 0
    np.testing.assert_array_equal(buffer.chain[:10, 0], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    valid = reference_windows(history, 20, 3)
    np.random.seed(0)
    assert check_batch(buffer.sample_windows(100, 3), history, valid, 3) == valid


def test_terminated_and_truncated_kept_apart():
    buffer = SequenceReplayBuffer(20, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=2)
    fill(buffer, [["ok", "ok"], ["terminated", "truncated"], ["ok", "ok"]])
    np.testing.assert_array_equal(buffer.dones[:3], [[0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(buffer.timeouts[:3], [[0, 0], [0, 1], [0, 0]])
    batch = buffer.sample_windows(64, 2)
    ended = batch.observations[0, :, 1] == 0  # windows of steps 0-1
    assert ended.any()
    env = batch.observations[0, :, 0]
    assert torch.all(batch.terminated[1, ended] == (env[ended] == 0).float())
    assert torch.all(batch.truncated[1, ended] == (env[ended] == 1).float())
    assert torch.all(batch.terminated[1, ended] + batch.truncated[1, ended] == 1)


def test_invalid_transitions_cut_chains():
    buffer = SequenceReplayBuffer(20, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=1)
    history = fill(buffer, [["ok"]] * 4 + [["invalid"]] + [["ok"]] * 4)
    np.testing.assert_array_equal(buffer.chain[:9, 0], [0, 1, 2, 3, -1, 0, 1, 2, 3])
    assert buffer.num_valid_windows(4) == 2
    valid = reference_windows(history, 20, 2)
    np.random.seed(0)
    seen = check_batch(buffer.sample_windows(300, 2), history, valid, 2)
    assert all(not (g0 <= 4 <= g0 + 1) for _, g0 in seen)


def test_buffer_argument_errors():
    with pytest.raises(ValueError, match="optimize_memory_usage=False"):
        SequenceReplayBuffer(10, OBS_SPACE, ACT_SPACE, device="cpu", optimize_memory_usage=True)
    buffer = SequenceReplayBuffer(10, OBS_SPACE, ACT_SPACE, device="cpu")
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        buffer.sample_windows(2, 0)
    fill(buffer, [["ok"]] * 3)
    with pytest.raises(NoValidWindowError, match="no window of 4 consecutive transitions"):
        buffer.sample_windows(2, 4)


def test_empty_buffer_raises_no_valid_window():
    buffer = SequenceReplayBuffer(10, OBS_SPACE, ACT_SPACE, device="cpu")
    assert buffer.num_valid_windows(1) == 0
    with pytest.raises(NoValidWindowError):
        buffer.sample_windows(2, 1)


def test_learn_calls_do_not_stitch_episodes():
    """A new learn() resets the env: its first step must not continue the previous chain."""
    model = PWM("MlpPolicy", CounterEnv(length=1000, terminate=False), seed=0, **tiny_kwargs(learning_starts=20))
    model.learn(30)
    model.learn(30)  # reset_num_timesteps=True: the env is reset, a new episode starts
    rb = model.replay_buffer
    assert rb.pos == 60
    assert rb.chain[30, 0] == 0
    np.testing.assert_array_equal(rb.observations[30, 0], [0, 1, 0])  # reset observation of episode 1
    h = model.horizon
    assert rb.num_valid_windows(h) == 2 * (30 - h + 1)
    np.random.seed(0)
    batch = rb.sample_windows(500, h)
    episodes = batch.observations[:, :, 1]
    assert torch.all(episodes == episodes[0])
    # Continuing without reset is the same episode: the chain goes on.
    model.learn(10, reset_num_timesteps=False)
    assert rb.chain[60, 0] == 30
    assert rb.num_valid_windows(h) == (30 - h + 1) + (40 - h + 1)


# --------------------------------------------------------------------------- partial windows
def reference_partial(history: list[list[Transition]], capacity: int, horizon: int) -> dict[tuple[int, int], int]:
    """Brute force for ``partial_windows``: ``(env, first step) -> real steps`` for every stored
    valid transition; a window runs until its episode chain ends, is cut, or meets the head."""
    windows = {}
    for e, transitions in enumerate(history):
        stored = transitions[-capacity:]
        for i, first in enumerate(stored):
            if first.segment < 0:
                continue
            real = 0
            for t in stored[i : i + horizon]:
                if t.segment != first.segment:
                    break
                real += 1
                if t.kind in ("terminated", "truncated"):
                    break
            windows[(e, first.step)] = real
    return windows


def check_partial_batch(batch, history, reference: dict[tuple[int, int], int], horizon: int) -> set:
    obs, acts, rews = batch.observations.numpy(), batch.actions.numpy(), batch.rewards.numpy()
    term, trunc, mask = batch.terminated.numpy(), batch.truncated.numpy(), batch.mask.numpy()
    seen = set()
    for b in range(obs.shape[1]):
        e, g0 = int(obs[0, b, 0]), int(obs[0, b, 1])
        real = reference[(e, g0)]
        seen.add((e, g0))
        np.testing.assert_array_equal(mask[:, b], np.arange(horizon) < real)
        steps = g0 + np.minimum(np.arange(horizon), real - 1)  # masked steps repeat the last real one
        np.testing.assert_array_equal(obs[1:, b, 1], steps)
        np.testing.assert_array_equal(obs[1:, b, 0], e)
        np.testing.assert_array_equal(acts[:, b, 0], steps)
        np.testing.assert_allclose(rews[:, b], (steps + e / 10) * mask[:, b], rtol=1e-6)
        kinds = {t.step: t.kind for t in history[e]}
        done = np.array([kinds[int(s)] in ("terminated", "truncated") for s in steps]) * mask[:, b]
        np.testing.assert_array_equal(term[:, b] + trunc[:, b], done)
        assert all(kinds[int(s)] != "invalid" for s in steps)
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(buffer_cases())
def test_partial_windows_match_brute_force(case):
    n_envs, capacity, horizon, ops = case
    buffer = SequenceReplayBuffer(capacity * n_envs, OBS_SPACE, ACT_SPACE, device="cpu", n_envs=n_envs,
                                  partial_windows=True)
    history = fill(buffer, ops)
    reference = reference_partial(history, capacity, horizon)
    assert buffer.num_valid_windows(horizon) == len(reference)
    if not reference:
        return
    np.random.seed(len(ops))
    seen = check_partial_batch(buffer.sample_windows(40 * len(reference), horizon), history, reference, horizon)
    assert seen == set(reference)  # every stored transition starts windows, the last of episodes too


def test_partial_windows_train_pwm_on_an_episodic_task():
    pytest.importorskip("mujoco")
    kwargs = tiny_kwargs(learning_starts=100, replay_buffer_kwargs=dict(partial_windows=True))
    model = PWM("MlpPolicy", "InvertedPendulum-v5", seed=0, **kwargs).learn(160)
    batch = model.replay_buffer.sample_windows(256, model.horizon)
    assert batch.mask is not None and 0 < float(batch.mask.mean()) < 1  # short random episodes
    metrics = model.updater.pop_metrics()
    assert metrics and all(np.isfinite(v) for v in metrics.values())


def test_episodes_shorter_than_the_horizon_fall_back_to_partial_windows():
    """Every episode ends before a full window: PWM still trains (on masked windows) and
    says so once, instead of skipping every update."""
    env = gym.wrappers.TimeLimit(gym.make("Pendulum-v1").unwrapped, max_episode_steps=3)
    model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs(learning_starts=20, horizon=5))
    with pytest.warns(RuntimeWarning, match="holds no window of 5") as record:
        model.learn(60)
    assert sum("run past episode ends" in str(w.message) for w in record) == 1
    assert model._n_updates == 60 - 20
    assert model.replay_buffer.num_valid_windows(5) == 0  # the buffer itself stays full-window
    with pytest.raises(NoValidWindowError):
        model.replay_buffer.sample_windows(4, 5)
    batch = model.replay_buffer.sample_windows(64, 5, partial=True)
    assert batch.mask is not None and float(batch.mask[3:].sum()) == 0  # 3-step episodes
    assert all(np.isfinite(v) for v in model.updater.pop_metrics().values())
