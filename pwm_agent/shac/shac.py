"""SHAC: short-horizon actor-critic through a differentiable simulator (Xu et al., ICLR 2022)."""

from __future__ import annotations

import time
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import get_device, safe_mean
from stable_baselines3.common.vec_env import VecEnv

from pwm_agent.common.schedules import constant_value, decaying_schedule
from pwm_agent.envs.diffsim import DiffSimVectorEnv, check_differentiable_env, is_differentiable_env, make_diffsim
from pwm_agent.envs.vector import GymnasiumVecEnv
from pwm_agent.pwm import serialization
from pwm_agent.pwm.checks import check_policy_kwargs
from pwm_agent.shac.policies import MlpPolicy, SHACPolicy
from pwm_agent.shac.rollout import Trajectory, critic_targets, differentiable_rollout, train_critic

__all__ = ["SHAC"]

SelfSHAC = TypeVar("SelfSHAC", bound="SHAC")
_NOT_SAVED_ARGS = ("self", "policy", "env", "device", "policy_kwargs", "_init_setup_model", "__class__")


class SHAC(BaseAlgorithm):
    """SHAC (Xu et al., ICLR 2022), the paper's ground-truth-gradient baseline.

    Each epoch rolls the stochastic actor ``horizon`` steps through a differentiable
    simulator in all its envs, back-propagates the return (bootstrapped by the target
    critics at the window's end and at episode ends) into the actor, then fits the
    critic ensemble to TD(lambda) targets of the detached trajectory and moves the
    target critics towards it.

    :param policy: ``"MlpPolicy"`` or a :class:`SHACPolicy` subclass.
    :param env: a differentiable env (``pwm_agent.envs.diffsim`` or a dflex env of
        PWM's DiffRL fork, built with ``no_grad=False``), a built-in task name
        (``"CartPoleSwingUp"``, ``"pwm_agent/DoublePendulum-v0"``). ``SHAC.load`` without
        an env gives an agent for prediction only.
    :param learning_rate: actor learning rate, or an SB3 schedule.
    :param critic_learning_rate: critic learning rate.
    :param learning_rate_final: when ``learning_rate`` is a float (or SB3's
        ``ConstantSchedule``), both rates decay linearly to this value over training
        (SHAC's schedule); ``None``: constant. Ignored with any other schedule.
    :param horizon: rollout length ``T`` of one actor update (SHAC: 32).
    :param gamma: discount factor.
    :param gae_lambda: TD(lambda) parameter of the critic targets.
    :param critic_iterations: passes over each trajectory when fitting the critics.
    :param critic_minibatches: minibatches per pass.
    :param target_critic_alpha: ``target <- alpha * target + (1 - alpha) * critic`` after each epoch.
    :param actor_max_grad_norm: gradient-norm clip of the actor (SHAC: 1.0).
    :param critic_max_grad_norm: gradient-norm clip of the critics.
    :param betas: Adam betas of both optimisers (SHAC: ``(0.7, 0.95)``).
    :param num_envs: number of envs when ``env`` is a task name.
    :param policy_kwargs: :class:`SHACPolicy` arguments (``actor_arch``, ``critic_arch``, ...).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy}
    algorithm_family: ClassVar[str] = "SHAC"
    policy: SHACPolicy

    def __init__(
        self,
        policy: str | type[SHACPolicy],
        env: Any,
        learning_rate: float | Schedule = 2e-3,
        critic_learning_rate: float = 2e-3,
        learning_rate_final: float | None = 1e-5,
        horizon: int = 32,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        critic_iterations: int = 16,
        critic_minibatches: int = 4,
        target_critic_alpha: float = 0.2,
        actor_max_grad_norm: float = 1.0,
        critic_max_grad_norm: float = 1.0,
        betas: tuple[float, float] | list[float] = (0.7, 0.95),
        num_envs: int = 64,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        _check_hyperparameters(horizon, critic_iterations, critic_minibatches, target_critic_alpha, num_envs)
        _check_rates(gamma, gae_lambda, betas, learning_rate_final)
        self._init_kwargs = {k: v for k, v in locals().items() if k not in _NOT_SAVED_ARGS}
        self._init_kwargs["betas"] = list(betas)
        check_policy_kwargs(policy, self.policy_aliases, policy_kwargs)
        serialization.check_saveable(self._init_kwargs, policy_kwargs)
        if env is None and _init_setup_model:
            raise ValueError("SHAC needs an env: pass a differentiable env or a task name such as 'CartPoleSwingUp' "
                             "(env=None is for SHAC.load, to predict without an env).")
        if isinstance(env, str):
            env = make_diffsim(env, num_envs=num_envs, device=get_device(device), no_grad=False, seed=seed)
        elif env is not None and is_differentiable_env(env):
            device = _device_for(env, device)
        super().__init__(
            policy, env, learning_rate, policy_kwargs=policy_kwargs, stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log, verbose=verbose, device=device, support_multi_env=True,
            seed=seed, supported_action_spaces=(spaces.Box,),
        )
        self.critic_learning_rate = critic_learning_rate
        self.learning_rate_final = learning_rate_final
        self.horizon, self.gamma, self.gae_lambda = horizon, gamma, gae_lambda
        self.critic_iterations, self.critic_minibatches = critic_iterations, critic_minibatches
        self.target_critic_alpha = target_critic_alpha
        self.actor_max_grad_norm, self.critic_max_grad_norm = actor_max_grad_norm, critic_max_grad_norm
        self.betas = (float(betas[0]), float(betas[1]))
        self.skipped_updates = 0
        self._metrics: dict[str, float] = {}
        self._running: tuple[torch.Tensor, torch.Tensor] | None = None
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """A differentiable env is kept behind an SB3 ``VecEnv`` view (spaces, callbacks,
        evaluation); SHAC itself steps the differentiable env."""
        if is_differentiable_env(env):
            check_differentiable_env(env)
            return GymnasiumVecEnv(DiffSimVectorEnv(env=env))
        if isinstance(env, VecEnv) and _differentiable_env_of(env) is not None:
            check_differentiable_env(_differentiable_env_of(env))
            return env
        raise TypeError(
            f"SHAC needs a differentiable env (a pwm_agent.envs.diffsim env, a dflex env, or a task name such as "
            f"'CartPoleSwingUp'), got {type(env).__name__}. For Gymnasium envs, use PWM or SAC."
        )

    def _setup_lr_schedule(self) -> None:
        schedule = decaying_schedule(self.learning_rate, self.learning_rate_final)
        if schedule is None:
            super()._setup_lr_schedule()
        else:
            self.lr_schedule = schedule

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(  # type: ignore[assignment]
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        ).to(self.device)
        self.actor_optimizer = torch.optim.Adam(
            self.policy.actor.parameters(), lr=self.lr_schedule(1.0), betas=self.betas
        )
        self.critic_optimizer = torch.optim.Adam(
            self.policy.critic.parameters(), lr=self.critic_learning_rate, betas=self.betas
        )

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor_optimizer", "critic_optimizer"], []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_metrics", "_running"]

    def differentiable_env(self) -> Any:
        """The differentiable env SHAC steps (``None`` without an env)."""
        return _differentiable_env_of(self.env) if self.env is not None else None

    # --------------------------------------------------------------- learning
    def learn(
        self: SelfSHAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "SHAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSHAC:
        """Train for ``total_timesteps`` env steps (summed over envs; ``horizon * num_envs``
        per epoch). Callbacks' ``on_step`` runs after every simulator step, with SB3's
        ``dones``, ``rewards`` and ``infos`` (``infos[i]["episode"]`` at episode ends) in
        ``locals``. The agent's own ``get_env()`` steps the same simulator: evaluate on a
        separate env (e.g. ``gym.make("pwm_agent/CartPoleSwingUp-v0")``), never on it."""
        env = self.differentiable_env()
        if env is None:
            raise ValueError("This SHAC agent has no env: pass one with `set_env(env)` or `SHAC.load(path, env=env)`.")
        if self.horizon * int(env.num_envs) < self.critic_minibatches:
            raise ValueError(
                f"horizon * num_envs = {self.horizon * int(env.num_envs)} transitions per epoch cannot fill "
                f"critic_minibatches={self.critic_minibatches}; use more envs, a longer horizon or fewer minibatches."
            )
        env_will_reset = reset_num_timesteps or self._last_obs is None
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        if env_will_reset or self._running is None:
            zeros = torch.zeros(int(env.num_envs), device=self.device)
            self._running = (zeros, zeros.clone())
        while self.num_timesteps < total_timesteps:
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            if not self._epoch(env, callback):
                break
            self._n_updates += 1
            if log_interval and self._n_updates % log_interval == 0:
                self._dump_logs()
        callback.on_training_end()
        return self

    def _epoch(self, env: Any, callback: BaseCallback) -> bool:
        """One actor update from a fresh rollout, then the critic fit; ``False`` when a callback stops."""
        self._update_rates()
        self.policy.set_training_mode(True)
        callback.on_rollout_start()

        wants_locals = not (isinstance(callback, CallbackList) and not callback.callbacks)

        def on_step(step: dict[str, torch.Tensor]) -> bool:
            self.num_timesteps += int(env.num_envs)
            if wants_locals:  # SB3 callbacks read dones/rewards/infos (a host sync per step)
                callback.update_locals(_step_locals(self, env, step))
            return callback.on_step()

        assert self._running is not None
        result = differentiable_rollout(env, self.policy, self.horizon, self.gamma, self._running, on_step)
        callback.on_rollout_end()
        if result is None:
            self._running = None
            return False
        objective, trajectory, self._running = result
        actor_loss = -objective
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.actor.parameters(), self.actor_max_grad_norm)
        if torch.isfinite(grad_norm):
            self.actor_optimizer.step()
        else:
            self.skipped_updates += 1
        targets = critic_targets(self.policy, trajectory, self.gamma, self.gae_lambda)
        obs_dim = trajectory.obs.shape[-1]
        critic_loss = train_critic(
            self.policy, self.critic_optimizer, trajectory.obs.reshape(-1, obs_dim), targets.reshape(-1),
            self.critic_iterations, self.critic_minibatches, self.critic_max_grad_norm,
        )
        self.policy.soft_update_target(self.target_critic_alpha)
        self._record(trajectory, actor_loss, critic_loss, grad_norm)
        return True

    def _update_rates(self) -> None:
        progress = self._current_progress_remaining
        actor_lr = self.lr_schedule(progress)
        if constant_value(self.learning_rate) is None:  # a user schedule: the critic follows its ratio
            start = self.lr_schedule(1.0)
            critic_lr = self.critic_learning_rate * (actor_lr / start if start > 0 else 1.0)
        elif self.learning_rate_final is None:
            critic_lr = self.critic_learning_rate
        else:
            final = float(self.learning_rate_final)
            critic_lr = final + progress * (self.critic_learning_rate - final)
        for group in self.actor_optimizer.param_groups:
            group["lr"] = actor_lr
        for group in self.critic_optimizer.param_groups:
            group["lr"] = critic_lr
        self._metrics.update(learning_rate=actor_lr, critic_learning_rate=critic_lr)

    def _record(
        self, trajectory: Trajectory, actor_loss: torch.Tensor, critic_loss: torch.Tensor, grad_norm: torch.Tensor
    ) -> None:
        """Move this epoch's figures to the host once and fill SB3's episode buffer."""
        done = trajectory.done.cpu().numpy()
        returns, lengths = trajectory.episode_returns.cpu().numpy(), trajectory.episode_lengths.cpu().numpy()
        for t, i in zip(*np.nonzero(done)):
            self.ep_info_buffer.extend([{"r": float(returns[t, i]), "l": int(lengths[t, i]), "t": 0.0}])  # type: ignore[union-attr]
            self._episode_num += 1
        self._metrics.update(
            actor_loss=float(actor_loss.detach()), critic_loss=float(critic_loss), actor_grad_norm=float(grad_norm),
            actor_std=float(self.policy.actor.std().mean().detach()), mean_reward=float(trajectory.rewards.mean()),
        )

    def _dump_logs(self) -> None:
        elapsed = max(time.time_ns() - self.start_time, 1) / 1e9
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / elapsed)
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", safe_mean([ep["r"] for ep in self.ep_info_buffer]))
            self.logger.record("rollout/ep_len_mean", safe_mean([ep["l"] for ep in self.ep_info_buffer]))
        self.logger.record("time/episodes", self._episode_num, exclude="tensorboard")
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        for key, value in self._metrics.items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/skipped_updates", self.skipped_updates)
        self.logger.dump(step=self.num_timesteps)

    # ----------------------------------------------------------- persistence
    def save(self, path: Any, exclude: Any = None, include: Any = None) -> None:
        """Save in SB3's zip format, atomically, with a JSON config for pickle-free loading."""
        serialization.atomic_save(self, path, lambda target: BaseAlgorithm.save(self, target, exclude, include))

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfSHAC],
        path: Any,
        env: Any = None,
        device: torch.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfSHAC:
        """Load an agent saved by :meth:`save` without unpickling anything from the file
        (hyperparameters from JSON, tensors with ``torch.load(..., weights_only=True)``).

        :param env: a differentiable env, a task name (built with ``kwargs.get("num_envs", 64)``
            envs on ``device``), or ``None`` to predict only.
        """
        if print_system_info:
            serialization.print_system_info(path)
        if isinstance(env, str):
            env = make_diffsim(env, num_envs=int(kwargs.get("num_envs", 64)), device=get_device(device), no_grad=False)
        return serialization.safe_load(cls, path, env, device, custom_objects, kwargs)  # type: ignore[arg-type]


def _step_locals(model: SHAC, env: Any, step: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The per-step locals SB3 callbacks read (``dones``, ``rewards``, ``infos`` with
    Monitor-style ``episode`` entries), as NumPy."""
    dones = step["done"].cpu().numpy()
    infos: list[dict[str, Any]] = [{} for _ in range(len(dones))]
    if dones.any():
        returns, lengths = step["episode_returns"].cpu().numpy(), step["episode_lengths"].cpu().numpy()
        for i in np.flatnonzero(dones):
            infos[i]["episode"] = {"r": float(returns[i]), "l": int(lengths[i]), "t": 0.0}
    return {"self": model, "env": env, "dones": dones, "rewards": step["rewards"].cpu().numpy(), "infos": infos}


def _device_for(env: Any, device: torch.device | str) -> torch.device | str:
    """The agent's device for a differentiable env: the env's own with ``"auto"``; an
    explicit device must match it (gradients flow between the two)."""
    env_device = torch.device(getattr(env, "device", "cpu"))
    if device == "auto":
        return env_device
    wanted = get_device(device)
    if _indexed(wanted) != _indexed(env_device):
        raise ValueError(
            f"SHAC on device {wanted} cannot backpropagate through an env on {env_device}: "
            f"create the env with device='{wanted}', or pass device='auto' (uses the env's device)."
        )
    return device


def _indexed(device: torch.device) -> torch.device:
    """``cuda`` as ``cuda:<current device>`` (the GPU it means now), other devices as they are."""
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _differentiable_env_of(venv: VecEnv) -> Any:
    inner = getattr(venv, "venv", None)
    return getattr(inner, "diff_env", None) if isinstance(inner, DiffSimVectorEnv) else None


def _check_hyperparameters(
    horizon: int, critic_iterations: int, critic_minibatches: int, target_critic_alpha: float, num_envs: int
) -> None:
    for name, value in (("horizon", horizon), ("critic_iterations", critic_iterations),
                        ("critic_minibatches", critic_minibatches), ("num_envs", num_envs)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
    if not 0.0 <= target_critic_alpha < 1.0:
        raise ValueError(f"target_critic_alpha must be in [0, 1), got {target_critic_alpha}.")


def _check_rates(gamma: float, gae_lambda: float, betas: Any, learning_rate_final: float | None) -> None:
    for name, value in (("gamma", gamma), ("gae_lambda", gae_lambda)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two Adam coefficients in [0, 1), got {betas!r}.")
    if learning_rate_final is not None and learning_rate_final < 0:
        raise ValueError(f"learning_rate_final must be >= 0 (or None for a constant rate), got {learning_rate_final}.")
