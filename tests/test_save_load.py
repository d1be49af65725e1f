"""Saving and loading: round trips, continued training, atomic writes, pickle-free loading."""

from __future__ import annotations

import base64
import io
import json
import pathlib
import warnings
import zipfile

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import SAC
from stable_baselines3.common import base_class as sb3_base_class
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.save_util import json_to_data

from pwm_agent import PWM
from pwm_agent.buffers import SequenceReplayBuffer
from pwm_agent.pwm.serialization import CONFIG_ENTRY

from conftest import DictObsWrapper, ShiftedActionWrapper, tiny_kwargs

OBS = np.random.default_rng(0).uniform(-1.0, 1.0, size=(16, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PWM, pathlib.Path]:
    """A briefly trained Pendulum agent and its save (module-wide: do not mutate the model)."""
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(100)
    path = tmp_path_factory.mktemp("save") / "pwm.zip"
    model.save(path)
    return model, path


def assert_same_predictions(a: PWM, b: PWM, obs: np.ndarray = OBS) -> None:
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rewrite_entry(src: pathlib.Path, dst: pathlib.Path, name: str, content: bytes) -> None:
    """Copy the zip ``src`` to ``dst`` with entry ``name`` replaced by ``content``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for entry in zin.namelist():
            zout.writestr(entry, content if entry == name else zin.read(entry))


class _OpenMarker:
    """Unpickling this object opens (creates) ``path``: proof that a pickle was loaded."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# --------------------------------------------------------------------------- round trips
def test_round_trip_identical_actions(trained, tmp_path):
    model, path = trained
    loaded = PWM.load(path)
    assert loaded.env is None
    assert_same_predictions(model, loaded)
    assert state_dicts_equal(model.policy.state_dict(), loaded.policy.state_dict())
    assert loaded.num_timesteps == model.num_timesteps == 100
    assert loaded._n_updates == model._n_updates == 50
    assert loaded.horizon == model.horizon == 4
    assert loaded.batch_size == 16
    assert loaded.observation_space == model.observation_space
    assert loaded.action_space == model.action_space
    # The optimiser states are restored too.
    for name in ("actor_optimizer", "critic_optimizer", "model_optimizer"):
        saved = getattr(model.updater, name).state_dict()["state"]
        restored = getattr(loaded.updater, name).state_dict()["state"]
        assert saved.keys() == restored.keys() and len(saved) > 0
        for key in saved:
            assert torch.equal(saved[key]["exp_avg"], restored[key]["exp_avg"])
    # Running statistics live in the policy's state dict.
    assert float(loaded.policy.return_rms.count) == float(model.policy.return_rms.count) > 1
    # Saving the loaded agent again gives the same tensors.
    loaded.save(tmp_path / "again")
    again = PWM.load(tmp_path / "again.zip")
    assert_same_predictions(model, again)


def test_save_without_suffix_and_to_file_object(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "agent")
    assert (tmp_path / "agent.zip").exists()
    assert_same_predictions(model, PWM.load(tmp_path / "agent"))
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    assert_same_predictions(model, PWM.load(buffer))


def test_load_env_none_predicts_and_needs_env_to_learn(trained):
    model, path = trained
    loaded = PWM.load(path, env=None)
    actions, _ = loaded.predict(OBS[0], deterministic=True)
    assert actions.shape == (1,) and -2.0 <= actions[0] <= 2.0
    with pytest.raises(ValueError, match="set_env"):
        loaded.learn(10)
    loaded.set_env(gym.make("Pendulum-v1"))
    with pytest.warns(RuntimeWarning, match="holds no window"):
        loaded.learn(60, reset_num_timesteps=False)
    assert loaded.num_timesteps == 160


def test_continue_training_after_load(trained, tmp_path):
    model, path = trained
    loaded = PWM.load(path, env=gym.make("Pendulum-v1"))
    n_updates = loaded._n_updates
    # The buffer was not saved: the resumed run says how to load one, and until horizon
    # steps are stored, windows run past the newest step (masked), with a warning.
    with pytest.warns(RuntimeWarning) as caught:
        loaded.learn(60, reset_num_timesteps=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "with an empty replay buffer" in messages and "agent.load_replay_buffer(path)" in messages
    assert any(w.filename == __file__ for w in caught)  # points at this learn() call
    assert "holds no window of 4 consecutive transitions" in messages
    assert loaded.num_timesteps == 160
    assert loaded.replay_buffer.pos == 60
    assert loaded._n_updates == n_updates + 60  # from the first stored step on
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded.num_timesteps == 180
    assert loaded._n_updates == n_updates + 80
    assert not state_dicts_equal(model.policy.actor.state_dict(), loaded.policy.actor.state_dict())


def test_load_overrides_hyperparameters(trained):
    _, path = trained
    loaded = PWM.load(path, gamma=0.9, horizon=3)
    assert loaded.gamma == 0.9
    assert loaded.horizon == 3
    assert loaded.update_config.horizon == 3


def test_dict_observation_round_trip(tmp_path):
    env = DictObsWrapper(gym.make("Pendulum-v1"))
    model = PWM("MultiInputPolicy", env, seed=0, **tiny_kwargs(learning_starts=20))
    model.learn(30)
    model.save(tmp_path / "dict.zip")
    loaded = PWM.load(tmp_path / "dict.zip")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # and with the env
    loaded = PWM.load(tmp_path / "dict.zip", env=DictObsWrapper(gym.make("Pendulum-v1")))
    with pytest.warns(RuntimeWarning, match="holds no window"):
        loaded.learn(10, reset_num_timesteps=False)
    assert loaded.num_timesteps == 40


def test_train_freq_tuple_round_trip(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, train_freq=(4, "step"), **tiny_kwargs())
    model.save(tmp_path / "tf.zip")
    loaded = PWM.load(tmp_path / "tf.zip")
    assert loaded.train_freq.frequency == 4


# --------------------------------------------------------------------------- bad files
def test_load_with_env_of_other_spaces_raises(trained):
    _, path = trained
    with pytest.raises(ValueError, match="does not match the saved agent"):
        PWM.load(path, env=gym.make("MountainCarContinuous-v0"))
    with pytest.raises(ValueError, match="does not match the saved agent"):
        PWM.load(path, env=ShiftedActionWrapper(gym.make("Pendulum-v1"), low=0.0, high=4.0))


def test_random_bytes_raise(tmp_path):
    path = tmp_path / "random.zip"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PWM.load(path)
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PWM.load(empty)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        PWM.load(tmp_path / "nothing.zip")


@pytest.mark.parametrize("fraction", [0.9, 0.5])
def test_truncated_file_raises_value_error(trained, tmp_path, fraction):
    _, path = trained
    data = path.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ValueError) as info:
        PWM.load(cut)
    assert "cut.zip" in str(info.value)


def test_truncated_file_message_says_truncated(trained, tmp_path):
    _, path = trained
    data = path.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        PWM.load(cut)


def test_sac_zip_raises(tmp_path):
    sac = SAC("MlpPolicy", "Pendulum-v1", buffer_size=100, policy_kwargs=dict(net_arch=[8]))
    sac.save(tmp_path / "sac.zip")
    with pytest.raises(ValueError, match=f"no {CONFIG_ENTRY}"):
        PWM.load(tmp_path / "sac.zip")


def test_unsupported_format_version_raises(trained, tmp_path):
    _, path = trained
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read(CONFIG_ENTRY))
    config["format_version"] = 999
    rewrite_entry(path, tmp_path / "future.zip", CONFIG_ENTRY, json.dumps(config).encode())
    with pytest.raises(ValueError, match="upgrade pwm_agent"):
        PWM.load(tmp_path / "future.zip")


def test_tensors_not_matching_config_raise(trained, tmp_path):
    _, path = trained
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read(CONFIG_ENTRY))
    config["policy_kwargs"]["actor_arch"] = [8]
    rewrite_entry(path, tmp_path / "mismatch.zip", CONFIG_ENTRY, json.dumps(config).encode())
    with pytest.raises(ValueError, match="do not fit"):
        PWM.load(tmp_path / "mismatch.zip")


# --------------------------------------------------------------------------- no unpickling
def test_load_never_unpickles_data_entry(trained, tmp_path):
    _, path = trained
    marker = tmp_path / "pwned_by_data"
    payload = base64.b64encode(cloudpickle.dumps(_OpenMarker(marker))).decode()
    evil_item = {":type:": "<class 'builtins.object'>", ":serialized:": payload}
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    assert any(isinstance(v, dict) and ":serialized:" in v for v in data.values())
    for key, value in data.items():
        if isinstance(value, dict) and ":serialized:" in value:
            data[key] = dict(evil_item)
    data["evil"] = dict(evil_item)
    evil_json = json.dumps(data)

    # The payload is live: SB3's own deserialiser runs it.
    proof = tmp_path / "proof"
    proof_payload = base64.b64encode(cloudpickle.dumps(_OpenMarker(proof))).decode()
    json_to_data(json.dumps({"evil": {**evil_item, ":serialized:": proof_payload}}))
    assert proof.exists()

    evil_zip = tmp_path / "evil.zip"
    rewrite_entry(path, evil_zip, "data", evil_json.encode())
    loaded = PWM.load(evil_zip)
    assert not marker.exists()
    assert loaded.predict(OBS, deterministic=True)[0].shape == (16, 1)
    loaded = PWM.load(evil_zip, env=gym.make("Pendulum-v1"))
    assert not marker.exists()


def test_load_never_unpickles_tensor_entries(trained, tmp_path):
    _, path = trained
    marker = tmp_path / "pwned_by_pth"
    blob = io.BytesIO()
    torch.save({"policy": _OpenMarker(marker)}, blob)
    rewrite_entry(path, tmp_path / "evil_pth.zip", "policy.pth", blob.getvalue())
    with pytest.raises(Exception):  # noqa: B017 - any error, as long as nothing is unpickled
        PWM.load(tmp_path / "evil_pth.zip")
    assert not marker.exists()


def test_tampered_tensor_entry_raises_value_error(trained, tmp_path):
    _, path = trained
    blob = io.BytesIO()
    torch.save({"policy": _OpenMarker(tmp_path / "m")}, blob)
    rewrite_entry(path, tmp_path / "evil_pth.zip", "policy.pth", blob.getvalue())
    with pytest.raises(ValueError):
        PWM.load(tmp_path / "evil_pth.zip")


# --------------------------------------------------------------------------- atomic save
def test_save_leaves_no_temporary_files(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "a.zip")
    model.save(tmp_path / "a.zip")  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert CONFIG_ENTRY in archive.namelist()
        assert archive.testzip() is None


def test_failed_save_keeps_old_file(trained, tmp_path, monkeypatch):
    model, _ = trained
    target = tmp_path / "agent.zip"
    model.save(target)
    before = target.read_bytes()

    def crash_mid_write(save_path, *args, **kwargs):
        with open(save_path, "wb") as handle:
            handle.write(before[: len(before) // 3])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(sb3_base_class, "save_to_zip_file", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.zip"]
    monkeypatch.undo()
    assert_same_predictions(model, PWM.load(target))


# --------------------------------------------------------------------------- replay buffer
def test_replay_buffer_round_trip(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(80)
    model.save_replay_buffer(tmp_path / "buffer")
    assert (tmp_path / "buffer.pkl").exists()
    rb = model.replay_buffer

    other = PWM("MlpPolicy", "Pendulum-v1", seed=1, **tiny_kwargs())
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    loaded = other.replay_buffer
    assert isinstance(loaded, SequenceReplayBuffer)
    assert loaded.pos == rb.pos == 80 and loaded.full == rb.full
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts", "chain"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(rb, name), err_msg=name)
    assert loaded.num_valid_windows(4) == rb.num_valid_windows(4) == 77
    np.random.seed(0)
    a = rb.sample_windows(8, 4)
    np.random.seed(0)
    b = loaded.sample_windows(8, 4)
    assert a.tasks is None and b.tasks is None
    assert all(torch.equal(x, y) for x, y in zip(a[:5], b[:5]))
    # Training on the loaded buffer starts at once: learning_starts is already passed.
    other.num_timesteps = model.num_timesteps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other.learn(10, reset_num_timesteps=False)
    assert not [w for w in caught if "empty replay buffer" in str(w.message)]  # the buffer was loaded
    assert other._n_updates == 10
    assert other.replay_buffer.pos == 90
    # The new learn() call did not stitch its first step onto the loaded data.
    assert other.replay_buffer.chain[80, 0] == 0


def test_checkpoint_callback_with_replay_buffer(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    callback = CheckpointCallback(save_freq=40, save_path=str(tmp_path), name_prefix="pwm", save_replay_buffer=True)
    model.learn(80, callback=callback)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "pwm_40_steps.zip",
        "pwm_80_steps.zip",
        "pwm_replay_buffer_40_steps.pkl",
        "pwm_replay_buffer_80_steps.pkl",
    ]
    loaded = PWM.load(tmp_path / "pwm_80_steps.zip", env=gym.make("Pendulum-v1"))
    # The callback runs after the env step, before that step's update.
    assert loaded.num_timesteps == 80
    assert loaded._n_updates == model._n_updates - 1 == 29
    loaded.load_replay_buffer(tmp_path / "pwm_replay_buffer_80_steps.pkl")
    # SB3 calls the callback before storing the step's transition (as for SAC).
    assert loaded.replay_buffer.pos == 79
    loaded.learn(20, reset_num_timesteps=False)
    assert loaded.num_timesteps == 100
    assert loaded._n_updates == 29 + 20


def test_learning_rate_schedules_round_trip(tmp_path):
    from stable_baselines3.common.utils import ConstantSchedule, LinearSchedule

    for schedule, expected in ((LinearSchedule(1e-3, 1e-4, 0.5), 5.5e-4), (ConstantSchedule(3e-4), 3e-4)):
        model = PWM("MlpPolicy", "Pendulum-v1", learning_rate=schedule, learning_rate_final=None, seed=0,
                    **tiny_kwargs())
        model.save(tmp_path / "sched.zip")
        loaded = PWM.load(tmp_path / "sched.zip")
        assert loaded.lr_schedule(0.75) == pytest.approx(expected)


def test_other_callable_learning_rate_saves_its_start_value(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", learning_rate=lambda p: 2e-4 * p, seed=0, **tiny_kwargs())
    with pytest.warns(UserWarning, match="initial value"):
        model.save(tmp_path / "fn.zip")
    assert PWM.load(tmp_path / "fn.zip").lr_schedule(0.5) == pytest.approx(2e-4)


def test_load_ignores_foreign_custom_objects_but_rejects_unknown_kwargs(trained, tmp_path):
    _, path = trained
    # rl-zoo3's `enjoy` passes these; SB3 ignores names its file does not use.
    loaded = PWM.load(path, custom_objects={"lr_schedule": lambda _: 0.0, "clip_range": 0.2, "gamma": 0.9})
    assert loaded.gamma == 0.9
    with pytest.raises(TypeError, match="unknown argument"):
        PWM.load(path, clip_range=0.2)


def test_rl_zoo3_style_linear_schedule_is_saved_exactly(tmp_path):
    class SimpleLinearSchedule:  # the shape of rl-zoo3's ``lin_<value>`` schedule
        def __init__(self, initial_value: float) -> None:
            self.initial_value = initial_value

        def __call__(self, progress_remaining: float) -> float:
            return progress_remaining * self.initial_value

    model = PWM("MlpPolicy", "Pendulum-v1", learning_rate=SimpleLinearSchedule(4e-4), **tiny_kwargs())
    model.save(tmp_path / "zoo.zip")
    assert PWM.load(tmp_path / "zoo.zip").lr_schedule(0.25) == pytest.approx(1e-4)


def test_numpy_scalar_hyperparameters_round_trip(tmp_path):
    # values from a NumPy sweep are saved as plain numbers
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(gamma=np.float32(0.98), batch_size=np.int64(8)))
    model.save(tmp_path / "np.zip")
    loaded = PWM.load(tmp_path / "np.zip")
    assert loaded.gamma == pytest.approx(0.98) and loaded.batch_size == 8
    assert isinstance(loaded.batch_size, int)


class WindowCountingBuffer(SequenceReplayBuffer):
    """A user's buffer subclass (defined in the test module, importable by name)."""


def test_custom_replay_buffer_class_is_saved_by_name_and_passed_back(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, replay_buffer_class=WindowCountingBuffer, **tiny_kwargs())
    model.save(tmp_path / "buf.zip")
    config = json.loads(zipfile.ZipFile(tmp_path / "buf.zip").read(CONFIG_ENTRY))
    assert config["hyperparameters"]["replay_buffer_class"] == {
        "class": f"{__name__}.WindowCountingBuffer"
    }
    with pytest.raises(ValueError, match="replay_buffer_class=<that class>"):
        PWM.load(tmp_path / "buf.zip", env=gym.make("Pendulum-v1"))
    loaded = PWM.load(tmp_path / "buf.zip", env=gym.make("Pendulum-v1"), replay_buffer_class=WindowCountingBuffer)
    assert isinstance(loaded.replay_buffer, WindowCountingBuffer)
    assert_same_predictions(model, loaded)


def test_constant_schedule_decays_like_a_float(tmp_path):
    # rl-zoo3 hands a number from its YAML over as SB3's ConstantSchedule
    from stable_baselines3.common.utils import ConstantSchedule

    model = PWM("MlpPolicy", "Pendulum-v1", learning_rate=ConstantSchedule(4e-4), learning_rate_final=1e-4,
                **tiny_kwargs())
    assert model.lr_schedule(0.5) == pytest.approx(2.5e-4)
    model.save(tmp_path / "const.zip")
    assert PWM.load(tmp_path / "const.zip").lr_schedule(0.5) == pytest.approx(2.5e-4)
    constant = PWM("MlpPolicy", "Pendulum-v1", learning_rate=ConstantSchedule(4e-4), learning_rate_final=None,
                   **tiny_kwargs())
    assert constant.lr_schedule(0.5) == pytest.approx(4e-4)


def test_world_model_config_object_and_path_arguments_save(tmp_path):
    from pwm_agent import WorldModelConfig

    config = WorldModelConfig(latent_dim=16, enc_dims=(32,), mlp_dims=(32, 32), activation="silu")
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, tensorboard_log=tmp_path / "runs",
                policy_kwargs=dict(world_model=config, actor_arch=[16], critic_arch=[16]))
    model.save(tmp_path / "cfg.zip")
    loaded = PWM.load(tmp_path / "cfg.zip")
    assert loaded.policy.wm_config == config and loaded.tensorboard_log == str(tmp_path / "runs")


def test_constant_schedule_saved_by_older_versions_stays_constant(tmp_path):
    # Files written before ConstantSchedule decayed hold {"schedule": "constant"} beside the
    # default learning_rate_final: they load with the constant rate they trained with.
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.save(tmp_path / "new.zip")
    config = json.loads(zipfile.ZipFile(tmp_path / "new.zip").read(CONFIG_ENTRY))
    config["hyperparameters"].update(learning_rate={"schedule": "constant", "value": 4e-4}, learning_rate_final=1e-5)
    rewrite_entry(tmp_path / "new.zip", tmp_path / "old.zip", CONFIG_ENTRY, json.dumps(config).encode())
    assert PWM.load(tmp_path / "old.zip").lr_schedule(0.0) == pytest.approx(4e-4)
    # an override of the rate (or of its end) at load decays as a float does
    assert PWM.load(tmp_path / "old.zip", learning_rate=5e-4).lr_schedule(0.0) == pytest.approx(1e-5)


def test_float_rate_given_at_load_decays_after_a_schedule(tmp_path):
    from stable_baselines3.common.utils import LinearSchedule

    model = PWM("MlpPolicy", "Pendulum-v1", learning_rate=LinearSchedule(1e-3, 1e-4, 1.0), **tiny_kwargs())
    model.save(tmp_path / "lin.zip")
    assert PWM.load(tmp_path / "lin.zip", learning_rate=5e-4).lr_schedule(0.0) == pytest.approx(1e-5)


def test_custom_buffer_class_not_needed_to_predict(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, replay_buffer_class=WindowCountingBuffer, **tiny_kwargs())
    model.save(tmp_path / "buf.zip")
    with pytest.warns(UserWarning, match="loaded with the default class"):
        loaded = PWM.load(tmp_path / "buf.zip")
    assert_same_predictions(model, loaded)


def test_loading_a_buffer_mid_run_never_stitches_it_to_the_live_env(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(50)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = PWM("MlpPolicy", "Pendulum-v1", seed=1, **tiny_kwargs())
    other.learn(30)  # its env is mid-episode: learn() below goes on without a reset
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    other.learn(10, reset_num_timesteps=False)
    assert other.replay_buffer.pos == 60
    assert other.replay_buffer.chain[50, 0] == 0 and other.replay_buffer.chain[51, 0] == 1


def test_loading_another_algorithms_buffer_is_refused(tmp_path):
    sac = SAC("MlpPolicy", "Pendulum-v1", learning_starts=10, buffer_size=100)
    sac.learn(20)
    sac.save_replay_buffer(tmp_path / "sac.pkl")
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    own = model.replay_buffer
    with pytest.raises(ValueError, match="holds a ReplayBuffer, not PWM's SequenceReplayBuffer"):
        model.load_replay_buffer(tmp_path / "sac.pkl")
    assert model.replay_buffer is own


def test_print_system_info_prints_saved_and_current(trained, capsys):
    _, path = trained
    PWM.load(path, print_system_info=True)
    out = capsys.readouterr().out
    assert "== SAVED MODEL SYSTEM INFO ==" in out and out.count("PyTorch:") == 2


def test_a_second_learn_call_warns_that_the_decay_restarts():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(60)
    assert model.lr_schedule(model._current_progress_remaining) == pytest.approx(model.learning_rate_final, rel=0.1)
    with pytest.warns(UserWarning, match="decays again from"):
        model.learn(60, reset_num_timesteps=False)
    constant = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(learning_rate_final=None))
    constant.learn(40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        constant.learn(20, reset_num_timesteps=False)
    assert not [w for w in caught if "decays again" in str(w.message)]
