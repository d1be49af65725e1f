"""SHAC: objective and targets, the SB3 API (callbacks, save/load, determinism), clear errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import (
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure

from pwm_agent import PWM
from pwm_agent.envs import GymnasiumVecEnv
from pwm_agent.envs.diffsim import CartPoleSwingUp, DiffSimVectorEnv, DoublePendulum
from pwm_agent.objectives import td_lambda_episodic
from pwm_agent.shac import SHAC
from pwm_agent.shac.rollout import differentiable_rollout

SMALL = dict(horizon=4, critic_iterations=2, policy_kwargs=dict(actor_arch=[16], critic_arch=[16]))


def _agent(num_envs: int = 4, seed: int = 0, **kwargs) -> SHAC:
    env = CartPoleSwingUp(num_envs=num_envs, seed=seed)
    return SHAC("MlpPolicy", env, seed=seed, **{**SMALL, **kwargs})


def test_td_lambda_episodic_limits() -> None:
    gen = torch.Generator().manual_seed(0)
    rewards, next_values = torch.rand(5, 3, generator=gen), torch.rand(5, 3, generator=gen)
    ends = torch.zeros(5, 3)
    ends[-1] = 1.0
    ends[1, 0] = 1.0  # env 0's episode ends after step 1
    gamma = 0.9
    one_step = td_lambda_episodic(rewards, next_values, ends, gamma, 0.0)
    torch.testing.assert_close(one_step, rewards + gamma * next_values)
    monte_carlo = td_lambda_episodic(rewards, next_values, ends, gamma, 1.0)
    # Env 0, step 0: r0 + g r1 + g^2 V'_1 (its episode ends at step 1).
    expected = rewards[0, 0] + gamma * rewards[1, 0] + gamma**2 * next_values[1, 0]
    torch.testing.assert_close(monte_carlo[0, 0], expected)
    # Env 1, step 3: r3 + g r4 + g^2 V'_4.
    expected = rewards[3, 1] + gamma * rewards[4, 1] + gamma**2 * next_values[4, 1]
    torch.testing.assert_close(monte_carlo[3, 1], expected)


class _FallingCartPole(CartPoleSwingUp):
    """Terminates when the cart leaves |x| < 0.05 (so terminations happen within a few steps)."""

    def termination(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0].abs() > 0.05


@pytest.mark.parametrize("env_cls", [CartPoleSwingUp, _FallingCartPole], ids=["truncations", "terminations"])
def test_rollout_objective_cuts_at_episode_ends(env_cls: type) -> None:
    """Objective = sum over episode pieces of discounted rewards + gamma^k V(end state),
    with no bootstrap after a termination."""
    agent = _agent(num_envs=2)
    env = env_cls(num_envs=2, seed=1, episode_length=3, stochastic_init=False)
    policy, gamma, horizon = agent.policy, 0.9, 5
    policy.normalize_observations = False
    torch.manual_seed(0)
    zeros = torch.zeros(2)
    objective, traj, _ = differentiable_rollout(env, policy, horizon, gamma, (zeros, zeros.clone()), lambda _: True)
    values = policy.target_critic.min_value(traj.next_obs).detach()
    manual = torch.zeros(())
    for i in range(2):
        acc, disc = 0.0, 1.0
        for t in range(horizon):
            acc = acc + disc * traj.rewards[t, i]
            if traj.ends[t, i]:
                manual = manual + acc + disc * gamma * values[t, i] * (1 - traj.terminated[t, i])
                acc, disc = 0.0, 1.0
            else:
                disc *= gamma
    torch.testing.assert_close(objective.detach(), manual / (horizon * 2))
    if env_cls is CartPoleSwingUp:
        assert traj.done[2].all() and not traj.done[3].any()  # 3-step episodes reset inside the window
    else:
        assert traj.terminated.any()


class _DivergingCartPole(CartPoleSwingUp):
    """Env 0 reports a NaN state on its second step (a simulator blowing up)."""

    def _step(self, actions):
        obs, rew, done, extras = super()._step(actions)
        if int(self.progress_buf[1]) == 2:
            extras["obs_before_reset"] = extras["obs_before_reset"].clone()
            extras["obs_before_reset"][0] = float("nan")
        return obs, rew, done, extras


def test_diverging_states_never_reach_the_critics() -> None:
    agent = SHAC("MlpPolicy", _DivergingCartPole(num_envs=2, seed=0, stochastic_init=False), seed=0, **SMALL)
    agent.learn(8)
    assert agent._n_updates == 1
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())
    assert np.isfinite(agent._metrics["critic_loss"]) and np.isfinite(agent._metrics["actor_loss"])


def test_one_epoch_updates_actor_and_critic_separately() -> None:
    agent = _agent()
    actor0 = [p.detach().clone() for p in agent.policy.actor.parameters()]
    critic0 = [p.detach().clone() for p in agent.policy.critic.parameters()]
    target0 = [p.detach().clone() for p in agent.policy.target_critic.parameters()]
    agent.learn(4 * 4)  # one epoch: horizon 4 x 4 envs
    assert agent._n_updates == 1 and agent.num_timesteps == 16
    assert any(not torch.equal(a, p) for a, p in zip(actor0, agent.policy.actor.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(critic0, agent.policy.critic.parameters()))
    for old, new, online in zip(target0, agent.policy.target_critic.parameters(), agent.policy.critic.parameters()):
        torch.testing.assert_close(new, 0.2 * old + 0.8 * online)
    # The actor loss reaches no critic parameter (the critics only bootstrap it).
    env = agent.differentiable_env()
    zeros = torch.zeros(4)
    agent.policy.zero_grad(set_to_none=True)
    objective, _, _ = differentiable_rollout(env, agent.policy, 3, 0.99, (zeros, zeros.clone()), lambda _: True)
    objective.backward()
    assert all(p.grad is None for p in agent.policy.critic.parameters())
    assert all(p.grad is not None for p in agent.policy.actor.parameters())


@pytest.mark.parametrize("final", [0.0, 1e-4])
def test_learning_rates_decay_linearly_to_the_final_value(final: float) -> None:
    agent = _agent(learning_rate=1e-3, critic_learning_rate=1e-2, learning_rate_final=final)
    agent.learn(64)  # 4 epochs of 16 steps: progress 1, 0.75, 0.5, 0.25 at their starts
    assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(final + 0.25 * (1e-3 - final))
    assert agent.critic_optimizer.param_groups[0]["lr"] == pytest.approx(final + 0.25 * (1e-2 - final))


def test_seed_gives_identical_training() -> None:
    a = _agent(seed=3).learn(48)
    b = _agent(seed=3).learn(48)
    for p, q in zip(a.policy.parameters(), b.policy.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_callbacks_progress_bar_and_logger(tmp_path) -> None:
    agent = _agent(verbose=0)
    agent.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    eval_env = gym.make("pwm_agent/CartPoleSwingUp-v0", episode_length=20)
    stop = StopTrainingOnRewardThreshold(reward_threshold=1e9)  # never reached
    callbacks = CallbackList([
        EvalCallback(eval_env, eval_freq=4, n_eval_episodes=2, callback_on_new_best=stop, verbose=0),
        CheckpointCallback(save_freq=8, save_path=str(tmp_path / "ckpt"), name_prefix="shac"),
    ])
    agent.learn(64, callback=callbacks, progress_bar=True)
    assert agent.num_timesteps == 64
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["shac_32_steps.zip", "shac_64_steps.zip"]
    header = (tmp_path / "log" / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"train/actor_loss", "train/critic_loss", "train/actor_grad_norm", "eval/mean_reward"} <= set(header)


def test_callbacks_see_dones_and_episode_infos() -> None:
    agent = SHAC("MlpPolicy", CartPoleSwingUp(num_envs=2, episode_length=3, seed=0), seed=0, **SMALL)
    agent.learn(400, callback=StopTrainingOnMaxEpisodes(max_episodes=2))  # 2 episodes per env
    assert agent.num_timesteps == 12  # both envs finish their second episode at step 6
    # The first epoch (steps 1-4) completed and logged the episodes that ended at step 3;
    # the second was cut short at step 6 and logs nothing.
    assert [ep["l"] for ep in agent.ep_info_buffer] == [3, 3]


def test_stop_training_callback_ends_learning_early() -> None:
    agent = _agent()
    eval_env = gym.make("pwm_agent/CartPoleSwingUp-v0", episode_length=5)
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1e9)  # any result stops
    agent.learn(400, callback=EvalCallback(eval_env, eval_freq=2, n_eval_episodes=1, callback_on_new_best=stop))
    assert agent.num_timesteps == 8 and agent._n_updates == 0  # stopped inside the first epoch


def test_save_load_round_trip_and_continue(tmp_path) -> None:
    agent = _agent()
    agent.learn(32)
    agent.save(tmp_path / "shac")
    obs = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    loaded = SHAC.load(tmp_path / "shac.zip")
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert loaded.num_timesteps == 32 and loaded.horizon == 4
    with pytest.raises(ValueError, match="no env"):
        loaded.learn(10)
    loaded = SHAC.load(tmp_path / "shac.zip", env=CartPoleSwingUp(num_envs=4))
    loaded.learn(16, reset_num_timesteps=False)
    assert loaded.num_timesteps == 48
    loaded.set_env(CartPoleSwingUp(num_envs=4, seed=5, episode_length=10))  # SB3: same number of envs
    loaded.learn(48, reset_num_timesteps=False)
    assert loaded.num_timesteps == 96
    assert [ep["l"] for ep in loaded.ep_info_buffer] == [10] * 4  # fresh episode stats after the swap
    by_name = SHAC.load(tmp_path / "shac.zip", env="CartPoleSwingUp", num_envs=3)
    assert by_name.differentiable_env().num_envs == 3
    with pytest.raises(ValueError, match="load it with SHAC.load"):
        PWM.load(tmp_path / "shac.zip")
    with pytest.raises(ValueError, match="does not match"):
        SHAC.load(tmp_path / "shac.zip", env=DoublePendulum(num_envs=2))


def test_evaluate_policy_on_the_gymnasium_view() -> None:
    agent = _agent()
    env = gym.make("pwm_agent/CartPoleSwingUp-v0", episode_length=10)
    mean, _ = evaluate_policy(agent, env, n_eval_episodes=2, warn=False)
    assert np.isfinite(mean) and mean < 0


def test_task_names_and_bad_input() -> None:
    agent = SHAC("MlpPolicy", "pwm_agent/DoublePendulum-v0", num_envs=3, **SMALL)
    assert agent.differentiable_env().num_envs == 3 and agent.observation_space.shape == (6,)
    with pytest.raises(TypeError, match="use PWM or SAC"):
        SHAC("MlpPolicy", gym.make("Pendulum-v1"))
    with pytest.raises(ValueError, match="no_grad=False"):
        SHAC("MlpPolicy", CartPoleSwingUp(num_envs=2, no_grad=True))
    with pytest.raises(ValueError, match="no_grad=False"):  # the Gymnasium view builds a no-grad simulator
        SHAC("MlpPolicy", GymnasiumVecEnv(DiffSimVectorEnv("CartPoleSwingUp", num_envs=2)))
    with pytest.raises(ValueError, match="critic_minibatches"):
        SHAC("MlpPolicy", CartPoleSwingUp(num_envs=1), horizon=2, critic_minibatches=4).learn(10)
    with pytest.raises(ValueError, match="gamma must be in"):
        SHAC("MlpPolicy", CartPoleSwingUp(num_envs=2), gamma=1.5)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        SHAC("MlpPolicy", CartPoleSwingUp(num_envs=2), horizon=0)
    with pytest.raises(TypeError, match="for net_arch use actor_arch"):
        SHAC("MlpPolicy", CartPoleSwingUp(num_envs=2), policy_kwargs=dict(net_arch=[8]))
    with pytest.raises(ValueError, match="SHAC needs an env"):
        SHAC("MlpPolicy", None)


def test_pwm_trains_on_the_same_dynamics() -> None:
    agent = PWM("MlpPolicy", "pwm_agent/CartPoleSwingUp-v0", learning_starts=50, batch_size=8, horizon=3,
                policy_kwargs=dict(world_model="small", actor_arch=[16], critic_arch=[16]), seed=0)
    agent.learn(80)
    assert agent.num_timesteps == 80 and agent._n_updates > 0


class _DflexStyleEnv:
    """A user's env honouring dflex's interface only (``num_acts``, no ``seed``, no spaces)."""

    def __init__(self, num_envs: int) -> None:
        self._sim = CartPoleSwingUp(num_envs=num_envs, seed=0)
        self.num_envs, self.num_obs, self.num_acts = num_envs, 5, 1
        self.device, self.no_grad = "cpu", False

    def reset(self, env_ids=None, grads=False):
        return self._sim.reset(env_ids, grads=grads)

    def step(self, actions):
        return self._sim.step(actions)


def test_a_dflex_style_env_plugs_into_shac() -> None:
    agent = SHAC("MlpPolicy", _DflexStyleEnv(num_envs=3), seed=0, **SMALL)
    agent.learn(24)
    assert agent.num_timesteps == 24 and agent.action_space.shape == (1,)
