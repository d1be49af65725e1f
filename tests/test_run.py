"""Learn a few hundred steps on every kind of env PWM accepts, and check what happened."""

from __future__ import annotations

import multiprocessing
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

from pwm_agent import PWM
from pwm_agent.envs import GymnasiumVecEnv, VecFlattenObservation

from conftest import CounterEnv, DictObsWrapper, ShiftedActionWrapper, recording_logger, tiny_kwargs

TRAIN_METRICS = (
    "train/model_loss",
    "train/consistency_loss",
    "train/reward_loss",
    "train/termination_loss",
    "train/actor_loss",
    "train/critic_loss",
)


# --------------------------------------------------------------------------- helpers
def check_learned(model: PWM, total: int) -> None:
    """Counters, buffer size and a prediction of a model after ``learn(total)`` from scratch."""
    n_envs = model.n_envs
    assert model.num_timesteps == total
    rb = model.replay_buffer
    assert not rb.full
    assert rb.pos * n_envs == total, "one stored transition per env step"
    # SB3 semantics: one update per collected vector step once learning_starts is passed.
    assert model._n_updates == sum(
        1 for step in range(n_envs, total + 1, n_envs) if step > model.learning_starts
    )
    assert model._n_updates > 0
    obs = model.env.reset()
    actions, state = model.predict(obs, deterministic=True)
    assert state is None
    assert actions.shape == (n_envs, *model.action_space.shape)
    assert np.all(actions >= model.action_space.low) and np.all(actions <= model.action_space.high)
    stochastic, _ = model.predict(obs, deterministic=False)
    assert stochastic.shape == actions.shape
    assert np.all(stochastic >= model.action_space.low) and np.all(stochastic <= model.action_space.high)
    for name, param in model.policy.named_parameters():
        assert torch_isfinite(param), f"non-finite parameter {name}"


def torch_isfinite(tensor) -> bool:
    import torch

    return bool(torch.isfinite(tensor).all())


def pendulum_reward(obs: np.ndarray, buffer_action: np.ndarray) -> np.ndarray:
    """Pendulum-v1's reward of stored ``(obs, action)`` pairs (actions in [-1, 1] -> torque 2a)."""
    theta = np.arctan2(obs[..., 1], obs[..., 0])
    theta_dot = obs[..., 2]
    torque = 2.0 * np.clip(buffer_action[..., 0], -1.0, 1.0)
    return -(theta**2 + 0.1 * theta_dot**2 + 0.001 * torque**2)


def check_pendulum_buffer(model: PWM) -> None:
    """The buffer holds raw Pendulum transitions: unit (cos, sin), true rewards, [-1, 1] actions,
    and each next observation is the following observation within an episode."""
    rb = model.replay_buffer
    n = rb.pos
    obs, next_obs = rb.observations[:n], rb.next_observations[:n]
    actions, rewards, dones = rb.actions[:n], rb.rewards[:n], rb.dones[:n]
    np.testing.assert_allclose(obs[..., 0] ** 2 + obs[..., 1] ** 2, 1.0, atol=1e-4)
    np.testing.assert_allclose(next_obs[..., 0] ** 2 + next_obs[..., 1] ** 2, 1.0, atol=1e-4)
    assert np.all(np.abs(actions) <= 1.0 + 1e-6)
    np.testing.assert_allclose(rewards, pendulum_reward(obs, actions), rtol=1e-4, atol=1e-4)
    continuing = dones[:-1] == 0
    np.testing.assert_allclose(next_obs[:-1][continuing], obs[1:][continuing], atol=1e-6)


def check_counter_buffer(model: PWM, lengths: list[int], terminates: list[bool]) -> None:
    """Exact check of stored :class:`CounterEnv` transitions (terminal obs, resets, timeouts)."""
    rb = model.replay_buffer
    n = rb.pos
    assert n > max(lengths), "the run must span several episodes"
    for e, (length, terminate) in enumerate(zip(lengths, terminates)):
        obs, nxt = rb.observations[:n, e], rb.next_observations[:n, e]
        assert np.all(obs[:, 0] == e) and np.all(nxt[:, 0] == e)
        # next_obs is the real next state of the same episode, the terminal one included.
        np.testing.assert_array_equal(nxt[:, 1], obs[:, 1])
        np.testing.assert_array_equal(nxt[:, 2], obs[:, 2] + 1)
        np.testing.assert_array_equal(rb.rewards[:n, e], nxt[:, 2])
        ends = nxt[:, 2] == length
        np.testing.assert_array_equal(rb.dones[:n, e].astype(bool), ends)
        np.testing.assert_array_equal(rb.timeouts[:n, e].astype(bool), ends & (not terminate))
        # After an episode end the next stored observation is the reset observation.
        for i in range(n - 1):
            if ends[i]:
                np.testing.assert_array_equal(obs[i + 1], [e, obs[i, 1] + 1, 0])
            else:
                np.testing.assert_array_equal(obs[i + 1], nxt[i])
        assert ends.sum() >= 2


# --------------------------------------------------------------------------- runs
def test_env_id_string_and_logged_metrics():
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, log_every=20, **tiny_kwargs())
    logger, writer = recording_logger()
    model.set_logger(logger)
    model.learn(200, log_interval=1)
    model.logger.dump(model.num_timesteps)
    check_learned(model, 200)
    check_pendulum_buffer(model)
    for key in TRAIN_METRICS:
        values = writer.values(key)
        assert values, f"{key} was never logged"
        assert np.all(np.isfinite(values)), key
    assert writer.values("train/n_updates")[-1] >= 141
    assert writer.values("train/skipped_transitions")[-1] == 0
    # A Pendulum episode (200 steps) ended: rollout statistics were logged too.
    assert writer.values("rollout/ep_rew_mean")
    assert model._episode_num == 1


def test_gymnasium_env_instance():
    env = gym.make("Pendulum-v1")
    model = PWM("MlpPolicy", env, seed=1, **tiny_kwargs())
    model.learn(150)
    check_learned(model, 150)
    check_pendulum_buffer(model)
    # Single observations work with predict too.
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,)
    assert -2.0 <= action[0] <= 2.0


def test_dummy_vec_env_two_envs():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs())
    model.learn(200)
    assert model.n_envs == 2
    check_learned(model, 200)
    check_pendulum_buffer(model)


def test_dummy_vec_env_episode_ends():
    """SB3's terminal_observation path: episode ends by termination and truncation."""
    lengths, terminates = [7, 9], [True, False]
    env = DummyVecEnv([partial(CounterEnv, lengths[i], terminates[i], i) for i in range(2)])
    model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs())
    model.learn(120)
    check_learned(model, 120)
    check_counter_buffer(model, lengths, terminates)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_subproc_vec_env():
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv,
                       vec_env_kwargs=dict(start_method="fork"))
    try:
        model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs())
        model.learn(120)
        check_learned(model, 120)
        check_pendulum_buffer(model)
    finally:
        env.close()


def test_vec_normalize_stores_raw_transitions():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.99)
    model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs())
    model.learn(160)
    assert model._vec_normalize_env is env
    check_learned(model, 160)
    # The buffer holds the original observations and rewards (normalised when sampled).
    check_pendulum_buffer(model)
    assert env.obs_rms.count > 100
    np.random.seed(0)
    batch = model.replay_buffer.sample_windows(8, model.horizon, env)
    np.random.seed(0)
    raw = model.replay_buffer.sample_windows(8, model.horizon, None)
    assert batch.observations.shape == raw.observations.shape == (5, 8, 3)
    expected = env.normalize_obs(raw.observations.numpy())
    np.testing.assert_allclose(batch.observations.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch.rewards.numpy(), env.normalize_reward(raw.rewards.numpy()), rtol=1e-5, atol=1e-6)
    assert not np.allclose(batch.observations.numpy(), raw.observations.numpy())


@pytest.mark.parametrize(
    ("vector_cls", "mode"),
    [
        (SyncVectorEnv, AutoresetMode.NEXT_STEP),
        (SyncVectorEnv, AutoresetMode.SAME_STEP),
        (SyncVectorEnv, AutoresetMode.DISABLED),
        (AsyncVectorEnv, AutoresetMode.NEXT_STEP),
        (AsyncVectorEnv, AutoresetMode.SAME_STEP),
    ],
    ids=["sync-next", "sync-same", "sync-disabled", "async-next", "async-same"],
)
def test_gymnasium_vector_env(vector_cls, mode):
    lengths, terminates = [7, 9], [True, False]
    venv = vector_cls(
        [partial(CounterEnv, lengths[i], terminates[i], i) for i in range(2)], autoreset_mode=mode
    )
    model = PWM("MlpPolicy", venv, seed=0, **tiny_kwargs())
    try:
        assert isinstance(model.env, VecEnv)
        assert model.n_envs == 2
        model.learn(100)
        check_learned(model, 100)
        check_counter_buffer(model, lengths, terminates)
        assert model._episode_num >= 10
    finally:
        model.env.close()


def test_gymnasium_vector_env_pendulum():
    venv = SyncVectorEnv([lambda: gym.make("Pendulum-v1", max_episode_steps=30) for _ in range(2)])
    model = PWM("MlpPolicy", venv, seed=0, **tiny_kwargs())
    model.learn(120)
    check_learned(model, 120)
    check_pendulum_buffer(model)
    rb = model.replay_buffer
    # 60 steps per env, episodes of 30: two truncations per env, none a termination.
    assert rb.dones[: rb.pos].sum() == 4
    np.testing.assert_array_equal(rb.timeouts[: rb.pos], rb.dones[: rb.pos])


def test_dict_observations_multi_input_policy():
    env = DictObsWrapper(gym.make("Pendulum-v1"))
    model = PWM("MultiInputPolicy", env, seed=0, **tiny_kwargs())
    assert isinstance(model.env, VecFlattenObservation)
    assert model.observation_space.shape == (3,)
    model.learn(150)
    check_learned(model, 150)
    check_pendulum_buffer(model)  # flattened in key order "a", "b" = Pendulum's own order
    obs, _ = env.reset(seed=3)
    flat = np.concatenate([obs["a"], obs["b"]])
    single, _ = model.predict(obs, deterministic=True)
    from_flat, _ = model.predict(flat, deterministic=True)
    assert single.shape == (1,)
    np.testing.assert_allclose(single, from_flat, rtol=1e-6)
    scalar_entry, _ = model.predict({"a": obs["a"], "b": float(obs["b"][0])}, deterministic=True)
    np.testing.assert_allclose(scalar_entry, single, rtol=1e-6)  # a bare float fills the (1,) entry
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    batched, _ = model.predict(batch, deterministic=True)
    assert batched.shape == (2, 1)
    np.testing.assert_allclose(batched[0], single, rtol=1e-6)


def test_asymmetric_action_bounds():
    env = ShiftedActionWrapper(gym.make("Pendulum-v1"), low=0.0, high=4.0)
    model = PWM("MlpPolicy", env, seed=0, **tiny_kwargs())
    model.learn(120)
    check_learned(model, 120)
    received = np.array(env.received)
    assert received.shape == (120, 1)
    assert np.all(received >= 0.0) and np.all(received <= 4.0)
    # Actions sent by the learned policy (after learning_starts) were not all at one bound.
    assert received[60:].std() > 0
    # The buffer holds [-1, 1] actions; the env's torque was 2 * buffer_action.
    check_pendulum_buffer(model)
    obs = np.stack([env.observation_space.sample() for _ in range(64)])
    for deterministic in (True, False):
        actions, _ = model.predict(obs, deterministic=deterministic)
        assert actions.shape == (64, 1)
        assert np.all(actions >= 0.0) and np.all(actions <= 4.0)
    # The policy's [-1, 1] output maps affinely onto [0, 4].
    np.testing.assert_allclose(model.policy.unscale_action(np.array([[-1.0], [0.0], [1.0]])), [[0.0], [2.0], [4.0]])


def test_mujoco_episodic_hopper():
    pytest.importorskip("mujoco")
    model = PWM("MlpPolicy", "Hopper-v5", seed=0, **tiny_kwargs())
    logger, writer = recording_logger()
    model.set_logger(logger)
    model.learn(150, log_interval=None)
    model.logger.dump(model.num_timesteps)
    check_learned(model, 150)
    rb = model.replay_buffer
    n = rb.pos
    assert model._episode_num >= 2, "random Hopper episodes fall over quickly"
    # Falls are terminations, not time-outs.
    assert rb.dones[:n].sum() == model._episode_num
    assert rb.timeouts[:n].sum() == 0
    # Windows only end at a termination, and the model's termination head is trained.
    batch = rb.sample_windows(256, model.horizon)
    assert batch.terminated[:-1].sum() == 0
    assert batch.terminated[-1].sum() > 0
    assert writer.values("train/termination_loss")


# --------------------------------------------------------------------------- gymnasium.vector adapter
LENGTHS, TERMINATES = (3, 4), (True, False)


def make_counter_vector(vector_cls, mode, **kwargs):
    fns = [partial(CounterEnv, LENGTHS[i], TERMINATES[i], i) for i in range(2)]
    return vector_cls(fns, autoreset_mode=mode, **kwargs)


ADAPTER_CASES = [
    pytest.param(SyncVectorEnv, {}, id="sync"),
    pytest.param(AsyncVectorEnv, {}, id="async"),
    pytest.param(AsyncVectorEnv, {"shared_memory": False}, id="async-no-shm"),
]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
@pytest.mark.parametrize(("vector_cls", "vector_kwargs"), ADAPTER_CASES)
def test_gymnasium_vec_env_terminal_observations(vector_cls, vector_kwargs, mode):
    vector_env = make_counter_vector(vector_cls, mode, **vector_kwargs)
    if vector_kwargs.get("shared_memory") is False and mode == AutoresetMode.NEXT_STEP:
        # gymnasium's async worker keeps its autoreset flag after a masked reset without
        # shared memory: the adapter refuses the combination instead of storing bogus steps.
        with pytest.raises(ValueError, match="shared_memory"):
            GymnasiumVecEnv(vector_env)
        vector_env.close()
        return
    venv = GymnasiumVecEnv(vector_env)
    try:
        assert venv.num_envs == 2
        assert venv.autoreset_mode == mode
        obs = venv.reset()
        np.testing.assert_array_equal(obs, [[0, 0, 0], [1, 0, 0]])
        episode, t = [0, 0], [0, 0]
        n_done = [0, 0]
        for step in range(13):
            obs, rewards, dones, infos = venv.step(np.zeros((2, 1), np.float32))
            assert obs.shape == (2, 3) and rewards.dtype == np.float32 and dones.shape == (2,)
            assert len(infos) == 2
            for i in range(2):
                t[i] += 1
                assert rewards[i] == t[i], f"step {step}, env {i}: reward of the true step"
                if t[i] == LENGTHS[i]:
                    assert dones[i], f"step {step}, env {i}: episode of {LENGTHS[i]} steps must end"
                    np.testing.assert_array_equal(infos[i]["terminal_observation"], [i, episode[i], LENGTHS[i]])
                    assert infos[i]["TimeLimit.truncated"] is (not TERMINATES[i])
                    assert "final_obs" not in infos[i]
                    # the info of the episode's last step (SB3 reads is_success there); the reset's apart
                    assert infos[i]["step_t"] == LENGTHS[i] and "reset_episode" not in infos[i]
                    assert venv.reset_infos[i]["reset_episode"] == episode[i] + 1
                    episode[i] += 1
                    t[i] = 0
                    n_done[i] += 1
                else:
                    assert not dones[i], f"step {step}, env {i}"
                    assert "terminal_observation" not in infos[i]
                    assert not infos[i].get("TimeLimit.truncated", False)
                # After a done, the returned observation is already the reset one.
                np.testing.assert_array_equal(obs[i], [i, episode[i], t[i]])
        assert n_done == [13 // 3, 13 // 4]
    finally:
        venv.close()


class _ResetsAll(gym.vector.VectorWrapper):
    """A vector env that ignores the reset mask (resets every sub-env), as some custom ones do."""

    def reset(self, *, seed=None, options=None):
        return self.env.reset(seed=seed)


def test_vector_env_ignoring_the_reset_mask_is_refused():
    venv = GymnasiumVecEnv(_ResetsAll(make_counter_vector(SyncVectorEnv, AutoresetMode.NEXT_STEP)))
    venv.reset()
    with pytest.raises(RuntimeError, match="ignores the reset mask.*SAME_STEP"):
        for _ in range(3):
            venv.step(np.zeros((2, 1), np.float32))
    venv.close()


def test_gymnasium_vec_env_attributes_and_seeding():
    venv = GymnasiumVecEnv(make_counter_vector(SyncVectorEnv, AutoresetMode.NEXT_STEP))
    assert venv.get_attr("length") == [3, 4]
    assert venv.get_attr("length", indices=[1]) == [4]
    venv.set_attr("length", 6)
    assert venv.get_attr("length") == [6, 6]
    # gymnasium.vector cannot address single sub-envs: refused, not silently applied to all.
    with pytest.raises(NotImplementedError, match="subset"):
        venv.set_attr("length", 5, indices=0)
    with pytest.raises(NotImplementedError, match="subset"):
        venv.env_method("_obs", indices=[1])
    assert venv.get_attr("length") == [6, 6]
    assert venv.env_method("_obs") is not None
    venv.seed(7)
    obs = venv.reset()
    np.testing.assert_array_equal(obs[:, 2], [0, 0])
    np.testing.assert_array_equal(venv.env_method("_obs")[1], obs[1])
    assert venv.env_is_wrapped(gym.Wrapper) == [False, False]
    venv.close()
    with pytest.raises(TypeError, match="VectorEnv"):
        GymnasiumVecEnv(DummyVecEnv([CounterEnv]))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- option variants
def _wm(**kwargs):
    return dict(
        world_model="small",
        world_model_kwargs=dict(latent_dim=16, enc_dims=[32], mlp_dims=[32, 32], **kwargs),
        actor_arch=[32],
        critic_arch=[32],
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(use_bf16=True),
        dict(policy_kwargs=_wm(reward_head="twohot")),
        dict(policy_kwargs=_wm(reward_head="twohot"), symexp_rewards=False),
        dict(policy_kwargs=_wm(termination_head=False)),
        dict(normalize_returns=False),
        dict(model_iterations=2, critic_iterations=2),
        dict(gradient_steps=2),
        dict(learning_rate_final=None, policy_kwargs={**_wm(), "activation": "relu", "n_critics": 2}),
    ],
    ids=["bf16", "twohot", "twohot-symlog", "no-termination-head", "no-return-norm", "more-iterations",
         "gradient-steps-2", "constant-lr-relu"],
)
def test_option_variants(options):
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(**options))
    model.learn(80)
    steps = options.get("gradient_steps", 1)
    assert model._n_updates == 30 * steps
    for name, param in model.policy.named_parameters():
        assert torch_isfinite(param), name
    metrics = model.updater.pop_metrics()
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    policy = model.policy
    if policy.wm_config.reward_head == "twohot":
        assert float(policy.world_model.reward_scale) == 1.0  # two-hot targets are not rescaled
    else:
        assert float(policy.world_model.reward_scale) != 1.0
    if not options.get("normalize_returns", True):
        assert float(policy.return_rms.count) == pytest.approx(1e-4)
    else:
        assert float(policy.return_rms.count) > 1
    lr = model.updater.actor_optimizer.param_groups[0]["lr"]
    assert lr == (5e-4 if options.get("learning_rate_final", 1e-5) is None else pytest.approx(1e-5))
    assert len(policy.critic.weights[0]) == policy.critic.n_critics == (2 if "n_critics" in str(options) else 3)


def test_train_freq_episode():
    env = gym.make("Pendulum-v1", max_episode_steps=40)
    model = PWM("MlpPolicy", env, seed=0, train_freq=(1, "episode"), gradient_steps=-1, **tiny_kwargs())
    model.learn(120)
    assert model.num_timesteps == 120 and model._episode_num == 3
    # gradient_steps=-1: as many updates as env steps collected in each training round.
    assert model._n_updates == 40 + 40
