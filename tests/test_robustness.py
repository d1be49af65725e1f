"""Edge cases: stopped rollouts, frozen parts, degenerate rewards, non-finite acting inputs."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

from pwm_agent import PWM, PWMPolicy

from conftest import tiny_kwargs


def test_stop_on_a_done_step_never_stitches_episodes():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    # Pendulum episodes last 200 steps: the callback stops training on the done step,
    # which SB3 never stores; the next learn() must start a new episode chain.
    model.learn(1000, callback=StopTrainingOnMaxEpisodes(max_episodes=1))
    assert model.num_timesteps == 200
    model.learn(60, reset_num_timesteps=False)
    rb = model.replay_buffer
    n = rb.pos
    chained = np.flatnonzero(rb.chain[1:n, 0] >= 1) + 1  # transitions that continue the previous one
    np.testing.assert_array_equal(rb.observations[chained, 0], rb.next_observations[chained - 1, 0])


def test_policy_save_load_reads_only_tensors_and_json(tmp_path):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    model.learn(60)
    model.policy.save(str(tmp_path / "policy.pth"))
    data = torch.load(tmp_path / "policy.pth", weights_only=True)  # loads without unpickling objects
    assert set(data) == {"state_dict", "config"}
    loaded = PWMPolicy.load(str(tmp_path / "policy.pth"))
    obs = np.array([0.3, -0.2, 1.0], np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    # a save that fails midway leaves the old file whole; a cut-off file is named on load
    good = (tmp_path / "policy.pth").read_bytes()

    def crash(obj, path, *args, **kwargs):
        pathlib.Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "save", crash)
        with pytest.raises(OSError, match="disk full"):
            model.policy.save(str(tmp_path / "policy.pth"))
    assert (tmp_path / "policy.pth").read_bytes() == good and sorted(tmp_path.iterdir()) == [tmp_path / "policy.pth"]
    (tmp_path / "cut.pth").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cut.pth is not a readable policy file"):
        PWMPolicy.load(str(tmp_path / "cut.pth"))


def test_constant_rewards_keep_scaled_targets_bounded():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs())
    rewards = torch.full((4, 16), -1.0)
    for _ in range(100):
        targets = model.updater.reward_targets(rewards)
    assert torch.all(targets.abs() <= 10.0)
    assert float(model.policy.world_model.reward_scale) <= 10.0 + 1e-4
    # A first different reward after that is clipped, not blown up.
    spike = model.updater.reward_targets(torch.full((4, 16), 5.0))
    assert torch.all(spike.abs() <= 10.0)


def test_zero_iterations_freeze_world_model_and_critics():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(model_iterations=0, critic_iterations=0))
    wm = {k: v.clone() for k, v in model.policy.world_model.state_dict().items()}
    critic = {k: v.clone() for k, v in model.policy.critic.state_dict().items()}
    actor = {k: v.clone() for k, v in model.policy.actor.state_dict().items()}
    model.learn(80)
    assert model._n_updates > 0
    for key, value in model.policy.world_model.state_dict().items():
        assert torch.equal(value, wm[key]), key
    for key, value in model.policy.critic.state_dict().items():
        assert torch.equal(value, critic[key]), key
    assert any(not torch.equal(v, actor[k]) for k, v in model.policy.actor.state_dict().items())
    with pytest.raises(ValueError, match="model_iterations must be >= 0"):
        PWM("MlpPolicy", "Pendulum-v1", model_iterations=-1, **tiny_kwargs())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_acting_observations(bad):
    skip = PWM("MlpPolicy", "Pendulum-v1", nan_policy="skip", **tiny_kwargs())
    obs = np.array([[bad, 1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(skip._finite_for_acting(obs), [[0.0, 1.0, 2.0]])
    strict = PWM("MlpPolicy", "Pendulum-v1", **tiny_kwargs())
    with pytest.raises(ValueError, match="nan_policy='skip'"):
        strict._finite_for_acting(obs)
