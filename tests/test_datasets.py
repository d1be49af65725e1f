"""Offline datasets: construction, validation, window sampling, Minari IO and collection."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import pytest
from gymnasium import spaces
from stable_baselines3 import SAC

from pwm_agent import PWM, datasets
from pwm_agent.buffers import NoValidWindowError
from pwm_agent.datasets import DatasetError, OfflineDataset

pytest.importorskip("minari")


def _episode(length: int, episode: int, obs_dim: int = 3, act_dim: int = 2, terminated: bool = False) -> dict:
    """Observations encode (episode, step): ``obs[t] = [episode, t, ...]``; actions in [-2, 2]."""
    obs = np.zeros((length + 1, obs_dim), np.float32)
    obs[:, 0], obs[:, 1] = episode, np.arange(length + 1)
    actions = np.linspace(-2, 2, length * act_dim, dtype=np.float32).reshape(length, act_dim)
    term = np.zeros(length, bool)
    term[-1] = terminated
    return {
        "observations": obs,
        "actions": actions,
        "rewards": np.arange(length, dtype=np.float32) + 100 * episode,
        "terminations": term,
        "truncations": ~term & (np.arange(length) == length - 1),
    }


ACTION_SPACE = spaces.Box(-2.0, 2.0, (2,), np.float32)
OBS_SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)


def _dataset(lengths: list[int], terminated: bool = False) -> OfflineDataset:
    eps = [_episode(n, i, terminated=terminated) for i, n in enumerate(lengths)]
    return OfflineDataset.from_episodes(eps, OBS_SPACE, ACTION_SPACE)


def test_layout_and_returns() -> None:
    data = _dataset([5, 3, 7])
    assert (data.num_episodes, data.num_transitions) == (3, 15)
    assert data.observations.shape == (18, 3) and data.actions.shape == (15, 2)
    np.testing.assert_allclose(data.episode_returns(), [10, 3 + 300, 21 + 1400])
    np.testing.assert_array_equal(data.episode(1)["observations"][:, 1], np.arange(4))
    assert data.num_windows(4) == 2 + 0 + 4


@pytest.mark.parametrize("horizon", [1, 3, 5])
def test_windows_stay_inside_episodes(horizon: int) -> None:
    data = _dataset([5, 2, 9, 6], terminated=True)
    batch = data.sample_windows(512, horizon, np.random.default_rng(0), action_space=ACTION_SPACE)
    obs = batch.observations.numpy()
    assert obs.shape == (horizon + 1, 512, 3) and batch.actions.shape == (horizon, 512, 2)
    episodes, steps = obs[..., 0], obs[..., 1]
    assert (episodes == episodes[0]).all(), "a window crossed an episode boundary"
    np.testing.assert_array_equal(np.diff(steps, axis=0), 1)
    lengths = np.array([5, 2, 9, 6])[episodes[0].astype(int)]
    assert (steps[-1] <= lengths).all()
    # terminated exactly on each episode's last transition; rewards match the step
    last = steps[1:] == lengths[None]
    np.testing.assert_array_equal(batch.terminated.numpy() == 1, last)
    np.testing.assert_allclose(batch.rewards.numpy(), steps[:-1] + 100 * episodes[:-1])
    # actions rescaled from [-2, 2] to [-1, 1]
    assert batch.actions.abs().max() <= 1.0 + 1e-6 and batch.actions.abs().max() > 0.99
    # every start that fits is drawn (uniform over valid windows)
    starts = {(int(e), int(s)) for e, s in zip(episodes[0], steps[0])}
    assert len(starts) == data.num_windows(horizon)


def test_no_window_longer_than_episodes() -> None:
    with pytest.raises(NoValidWindowError, match="shorter horizon"):
        _dataset([3, 2]).sample_windows(4, 4, np.random.default_rng(0))


def test_bad_episodes_name_the_fix() -> None:
    ep = _episode(4, 0)
    with pytest.raises(DatasetError, match="T \\+ 1 observations"):
        OfflineDataset.from_episodes([{**ep, "observations": ep["observations"][:-1]}])
    with pytest.raises(DatasetError, match="lacks"):
        OfflineDataset.from_episodes([{"observations": ep["observations"]}])
    bad = {**ep, "rewards": np.array([0, np.nan, 0, 0])}
    with pytest.raises(DatasetError, match="episode 1 holds NaN.*nan_policy='skip'"):
        OfflineDataset.from_episodes([ep, bad])
    data = OfflineDataset.from_episodes([ep, bad, ep], nan_policy="skip")
    assert data.num_episodes == 2 and data.skipped_episodes == 1
    with pytest.raises(DatasetError, match=r"episode 1 has observation/action widths \(4, 2\), episode 0 had \(3, 2\)"):
        OfflineDataset.from_episodes([ep, _episode(4, 1, obs_dim=4)])
    with pytest.raises(DatasetError, match="space Box.* holds 4 values but the data's observations have 3"):
        OfflineDataset.from_episodes([ep], spaces.Box(-1, 1, (4,)), ACTION_SPACE)


def test_non_finite_data_built_directly_is_refused(tmp_path: Path, tiny: dict) -> None:
    # arrays handed to OfflineDataset directly skip from_episodes' check: training and saving check
    good = _dataset([6, 6])
    rewards = good.rewards.copy()
    rewards[7] = np.inf
    data = OfflineDataset(good.observations, good.actions, rewards, good.terminations, good.truncations,
                          good.episode_lengths, observation_space=OBS_SPACE, action_space=ACTION_SPACE)
    agent = PWM("MlpPolicy", None, observation_space=OBS_SPACE, action_space=ACTION_SPACE, **tiny)
    with pytest.raises(DatasetError, match="episode 1 holds NaN or inf in `rewards`"):
        agent.pretrain_world_model(data, 1)
    with pytest.raises(DatasetError, match="episode 1 holds NaN or inf"):
        datasets.save_arrays(data, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_space_checks() -> None:
    data = _dataset([4, 4])
    data.check_spaces(OBS_SPACE, ACTION_SPACE)
    with pytest.raises(DatasetError, match="agent expects 4 and 2"):
        data.check_spaces(spaces.Box(-1, 1, (4,)), ACTION_SPACE)
    with pytest.raises(DatasetError, match="episode 0, step 0.*outside the action space.*Clip"):
        data.check_spaces(OBS_SPACE, spaces.Box(-1.0, 1.0, (2,), np.float32))


def test_split_select_and_concatenate() -> None:
    data = _dataset([4, 5, 6, 7, 8])
    train_ids, held_ids = data.split_episodes(0.4, seed=1)
    assert len(train_ids) == 3 and len(held_ids) == 2
    assert sorted(train_ids.tolist() + held_ids.tolist()) == [0, 1, 2, 3, 4]
    batch = data.sample_windows(256, 2, np.random.default_rng(0), episodes=held_ids)
    assert set(batch.observations[0, :, 0].int().tolist()) == set(held_ids.tolist())
    assert data.num_windows(2, held_ids) == sum(data.episode_lengths[held_ids] - 1)
    train, held = data.select(train_ids), data.select(held_ids)
    joined = datasets.concatenate([train, held])
    assert joined.num_transitions == data.num_transitions
    with pytest.raises(DatasetError, match="different"):
        datasets.concatenate([data, OfflineDataset.from_episodes([_episode(3, 0, obs_dim=4)])])


@pytest.mark.parametrize("data_format", ["hdf5", "arrow"])
def test_minari_round_trip(tmp_path: Path, data_format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    data = datasets.collect("Pendulum-v1", "random", 450, seed=0)
    path = datasets.save_minari(data, tmp_path / "pendulum-test-v0", env="Pendulum-v1", data_format=data_format)
    # Minari itself reads what we wrote
    reference = minari.MinariDataset(path / "data")
    assert reference.total_episodes == 3 and reference.total_steps == 450
    first = next(reference.iterate_episodes())
    np.testing.assert_array_equal(first.observations, data.episode(0)["observations"])
    # and we read it back, by path and by dataset id
    for key in (path, path / "data"):
        back = datasets.load(key)
        np.testing.assert_array_equal(back.observations, data.observations)
        np.testing.assert_array_equal(back.actions, data.actions)
        np.testing.assert_allclose(back.rewards, data.rewards)
        np.testing.assert_array_equal(back.truncations, data.truncations)
        assert back.action_space == data.action_space
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    assert datasets.load("pendulum-test-v0").num_transitions == 450
    with pytest.raises(FileExistsError, match="immutable"):
        datasets.save_minari(data, path)
    with pytest.raises(ValueError, match="must end in a version, e.g. mydata-v0"):
        datasets.save_minari(data, tmp_path / "mydata")


def test_minari_refuses_files_without_spaces(tmp_path: Path) -> None:
    path = datasets.save_minari(datasets.collect("Pendulum-v1", "random", 50, seed=0), tmp_path / "p-v0")
    meta_file = path / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    del meta["observation_space"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="never instantiates the env"):
        datasets.load(path)
    with pytest.raises(DatasetError, match="No Minari dataset"):
        datasets.load(tmp_path / "missing")
    other = datasets.save_minari(datasets.collect("Pendulum-v1", "random", 50, seed=0), tmp_path / "q-v0")
    meta_file = other / "data" / "metadata.json"
    good = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**good, "total_episodes": "abc"}))
    with pytest.raises(DatasetError, match="`total_episodes` is missing or not a count"):
        datasets.load(other)
    meta_file.write_text(json.dumps({**good, "observation_space": 5}))
    with pytest.raises(DatasetError, match=str(other / "data")):
        datasets.load(other)


def test_truncated_minari_file(tmp_path: Path) -> None:
    path = datasets.save_minari(datasets.collect("Pendulum-v1", "random", 600, seed=0), tmp_path / "p-v0")
    main = path / "data" / "main_data.hdf5"
    main.write_bytes(main.read_bytes()[: main.stat().st_size // 2])
    with pytest.raises(DatasetError, match="main_data.hdf5|truncated or corrupt|Cannot open"):
        datasets.load(path)


def test_collect_policies_and_dict_observations() -> None:
    sac = SAC("MlpPolicy", "Pendulum-v1", seed=0, learning_starts=10)
    data = datasets.collect("Pendulum-v1", sac, 250, seed=0, deterministic=True)
    assert data.num_transitions == 250 and data.episode_lengths.tolist() == [200, 50]
    assert data.truncations[[199, 249]].all() and data.truncations.sum() == 2
    zero = datasets.collect(gym.make("Pendulum-v1"), lambda obs: np.zeros(1), 20, seed=0)
    assert (zero.actions == 0).all()
    # the stored action is the one the env gets: clipped to the bounds; bad actions raise at once
    loud = datasets.collect("Pendulum-v1", lambda obs: np.array([50.0]), 5, seed=0)
    assert (loud.actions == 2.0).all()
    with pytest.raises(ValueError, match="action of shape \\(3,\\) at step 0"):
        datasets.collect("Pendulum-v1", lambda obs: np.zeros(3), 5)
    with pytest.raises(ValueError, match="NaN/inf action at step 0"):
        datasets.collect("Pendulum-v1", lambda obs: np.array([np.nan]), 5)
    env = gym.wrappers.TransformObservation(
        gym.make("Pendulum-v1"),
        lambda o: {"a": o[:2], "b": o[2:]},
        spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Box(-8, 8, (1,))}),
    )
    flat = datasets.collect(env, "random", 30, seed=0)
    assert flat.observation_dim == 3 and isinstance(flat.observation_space, spaces.Box)
    with pytest.raises(ValueError, match="'random'"):
        datasets.collect("Pendulum-v1", "expert", 10)


def test_array_folder_round_trip_and_memory_map(tmp_path: Path) -> None:
    data = _dataset([5, 3, 7], terminated=True)
    folder = datasets.save_arrays(data, tmp_path / "arrays")
    back = datasets.load(folder)
    assert isinstance(back.observations, np.memmap)
    for name in ("observations", "actions", "rewards", "terminations", "truncations", "episode_lengths"):
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    assert back.action_space == ACTION_SPACE
    a = data.sample_windows(32, 3, np.random.default_rng(1))
    b = back.sample_windows(32, 3, np.random.default_rng(1))
    assert a.tasks is None and b.tasks is None
    for x, y in zip(a[:5], b[:5]):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    raw = sum(getattr(data, n).nbytes for n in ("observations", "actions", "rewards", "terminations", "truncations"))
    stored = sum(f.stat().st_size for f in folder.iterdir())
    assert stored < raw + 4096, "storage should be the raw bytes plus headers"
    with pytest.raises(FileExistsError):
        datasets.save_arrays(data, folder)


def test_array_folder_corruption_is_named(tmp_path: Path) -> None:
    data = _dataset([5, 3, 7])
    folder = datasets.save_arrays(data, tmp_path / "arrays")
    rewards = folder / "rewards.npy"
    rewards.write_bytes(rewards.read_bytes()[:-8])
    with pytest.raises(DatasetError, match="rewards.npy is missing, truncated or corrupt"):
        datasets.load(folder)
    bad = OfflineDataset.from_episodes([_episode(4, 0), {**_episode(4, 1), "rewards": [0, 0, np.inf, 0]}],
                                       nan_policy="skip")
    assert bad.num_episodes == 1
    poisoned = datasets.save_arrays(_dataset([4, 4]), tmp_path / "poisoned")
    obs = np.load(poisoned / "observations.npy", mmap_mode="r+")
    obs[7, 0] = np.nan  # row 7 = episode 1 (rows 0-4 are episode 0)
    obs.flush()
    del obs
    with pytest.raises(DatasetError, match="episode 1 holds NaN or inf in `observations`"):
        datasets.load(poisoned)
    meta_file = poisoned / "pwm_dataset.json"
    meta = json.loads(meta_file.read_text())
    del meta["action_space"]["dtype"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="pwm_dataset.json: a space description is damaged"):
        datasets.load_arrays(poisoned)
    meta_file.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="must hold a JSON object"):
        datasets.load_arrays(poisoned)


def test_convert_minari_streams_to_arrays(tmp_path: Path) -> None:
    data = datasets.collect("Pendulum-v1", "random", 450, seed=0)
    path = datasets.save_minari(data, tmp_path / "p-v0")
    folder = datasets.convert_minari(path, tmp_path / "p-arrays", chunk_episodes=2)
    back = datasets.load(folder)
    np.testing.assert_array_equal(back.observations, data.observations)
    np.testing.assert_array_equal(back.truncations, data.truncations)
    assert back.observation_space == data.observation_space


CHUNKS = Path(__file__).parent / "fixtures" / "tdmpc2_chunks"


@pytest.mark.parametrize("version", ["0.8.3", "0.15.3"])
def test_tdmpc2_chunks_from_real_tensordict(version: str) -> None:
    """Chunks written by tensordict itself (see make_chunks.py) read without tensordict."""
    chunk = CHUNKS / f"chunk-tensordict-{version}.pt"
    data = datasets.load(chunk)
    assert data.tasks is not None and data.tasks.tolist() == [2, 2, 7, 7]
    assert data.episode_lengths.tolist() == [10] * 4 and data.observations.shape == (44, 24)
    steps = np.arange(11)
    np.testing.assert_allclose(data.episode(1)["observations"][:, 3], 100 + steps + 0.03, rtol=1e-6)
    np.testing.assert_allclose(data.episode(0)["rewards"], (steps[1:]) / 1000.0, rtol=1e-5)
    np.testing.assert_allclose(data.episode(2)["actions"][:, 0], np.tanh((200 + steps[1:]) / 50.0), rtol=1e-5)
    assert data.truncations.sum() == 4 and not data.terminations.any()
    pendulum = datasets.load(CHUNKS, task="pendulum-swingup") if version == "0.8.3" else None
    if pendulum is not None:  # a folder of both chunks, filtered and trimmed to the task's dims
        assert pendulum.num_episodes == 4 and pendulum.observation_dim == 3 and pendulum.action_dim == 1
        assert set(pendulum.tasks.tolist()) == {7}
    untrimmed = datasets.load_tdmpc2(chunk, task=[2, "pendulum-swingup"])
    assert untrimmed.observation_dim == 24 and untrimmed.num_episodes == 4


def test_tdmpc2_bad_input(tmp_path: Path) -> None:
    chunk = CHUNKS / "chunk-tensordict-0.15.3.pt"
    with pytest.raises(ValueError, match="Unknown task 'walker-sprint'.*Similar: \\['walker-stand'"):
        datasets.load(chunk, task="walker-sprint")
    with pytest.raises(DatasetError, match="no episode of task"):
        datasets.load(chunk, task="cheetah-run")
    assert datasets.load(chunk, task=np.int64(7)).num_episodes == datasets.load(chunk, task=7).num_episodes
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load(tmp_path / "missing.pt", task=7)
    mismatched = tmp_path / "mismatched.pt"
    torch.save({"obs": torch.zeros(2, 5, 3), "action": torch.zeros(3, 5, 1), "reward": torch.zeros(2, 5)}, mismatched)
    with pytest.raises(DatasetError, match="expected obs \\[E, T \\+ 1, O\\], action \\[E, T \\+ 1, A\\]"):
        datasets.load(mismatched)
    bad_task = tmp_path / "bad_task.pt"
    torch.save({"obs": torch.zeros(2, 5, 3), "action": torch.zeros(2, 5, 1), "reward": torch.zeros(2, 5),
                "task": torch.zeros(3)}, bad_task)
    with pytest.raises(DatasetError, match="`task` has shape \\(3,\\)"):
        datasets.load(bad_task)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(chunk.read_bytes()[:3000])
    with pytest.raises(DatasetError, match="truncated, corrupt"):
        datasets.load(broken)

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"obs": Payload()}, evil)
    with pytest.raises(DatasetError, match="holds objects other than"):
        datasets.load(evil)
    assert not marker.exists(), "loading a dataset ran code from it"


def test_single_task_agent_refuses_multitask_data(tiny: dict) -> None:
    from pwm_agent import PWM

    data = datasets.load(CHUNKS / "chunk-tensordict-0.15.3.pt")
    agent = PWM("MlpPolicy", None, observation_space=spaces.Box(-np.inf, np.inf, (24,)),
                action_space=spaces.Box(-1, 1, (6,)), **tiny)
    with pytest.raises(ValueError, match="several tasks.*task=..."):
        agent.pretrain_world_model(data, 1)
    walker = datasets.load(CHUNKS / "chunk-tensordict-0.15.3.pt", task="walker-run")
    agent.pretrain_world_model(walker, 2, validation_fraction=0)
