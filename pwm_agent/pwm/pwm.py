"""PWM: policy learning by first-order gradients through a learned world model."""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutReturn, Schedule
from stable_baselines3.common.vec_env import VecEnv

from pwm_agent.buffers import NoValidWindowError, SequenceReplayBuffer, WindowBatch
from pwm_agent.common.schedules import constant_value, decaying_schedule
from pwm_agent.envs.wrappers import flat_box
from pwm_agent.planning import MPPIConfig, MPPIPlanner
from pwm_agent.datasets.dataset import OfflineDataset
from pwm_agent.pwm import checks, offline, pretrained, serialization, warmup
from pwm_agent.pwm.policies import MlpPolicy, MultiInputPolicy, PWMPolicy
from pwm_agent.pwm.updates import UpdateConfig, Updater

__all__ = ["PWM"]

SelfPWM = TypeVar("SelfPWM", bound="PWM")
_NOT_SAVED_ARGS = (
    "self", "policy", "env", "device", "policy_kwargs", "_init_setup_model", "__class__",
    "observation_space", "action_space",
)


class PWM(OffPolicyAlgorithm):
    """Policy learning with multi-task World Models (Georgiev et al., ICLR 2025).

    Each update (1) trains a TD-MPC2-style world model on ``horizon + 1``-step
    windows of replayed transitions, (2) trains the actor by back-propagating
    the return of ``horizon``-step imagined rollouts through the frozen world model
    from replayed start states, bootstrapped by a critic ensemble, and (3) trains
    the critics on TD(lambda) targets of the detached imagined trajectory.

    :param policy: ``"MlpPolicy"`` (flat ``Box`` observations), ``"MultiInputPolicy"``
        (``Dict`` observations, flattened) or a :class:`PWMPolicy` subclass.
    :param env: an env id, a ``gymnasium.Env``, an SB3 ``VecEnv`` or a
        ``gymnasium.vector.VectorEnv``; ``None`` to load a model for prediction only.
    :param learning_rate: actor and critic learning rate, or an SB3 schedule.
    :param learning_rate_final: when ``learning_rate`` is a float (or SB3's
        ``ConstantSchedule``, which rl-zoo3 makes of a number in its YAML), decay it linearly
        to this value following SB3's progress, so every ``learn()`` call ends at it (a call
        with ``reset_num_timesteps=False`` starts part of the way down: see the algorithm
        docs); ``None``: constant. Any other schedule is used as it is and this value is
        ignored.
    :param model_learning_rate: world-model learning rate.
    :param buffer_size: replay capacity in transitions (over all envs).
    :param learning_starts: env steps (summed over envs) of random actions before training;
        at least ``horizon * n_envs``. ``"auto"`` (default): TD-MPC2's five episodes of random
        data, at least 1000 steps: the random phase ends once five episodes have ended and
        1000 steps are stored, at ``max(1000, 5 × time limit)`` steps at the latest (the
        env's ``TimeLimit``, which ``gymnasium.make`` adds from ``max_episode_steps``). 1000 on Pendulum-v1 and Hopper-v5, 5000 on
        HalfCheetah-v5. The attribute holds that bound from the first env on (0 before),
        and the step the phase ended at once it has ended.
    :param batch_size: start states per actor update (and windows per model update).
    :param horizon: imagination horizon ``H`` and world-model window length (the paper: 16;
        5 was steadier online on our benchmarks, see the docs' benchmark page).
    :param gamma: discount.
    :param gae_lambda: TD(lambda) parameter of the critic targets.
    :param train_freq: update the agent every ``train_freq`` steps (SB3 semantics).
    :param gradient_steps: updates per training round (``-1``: as many as env steps).
    :param model_iterations: world-model gradient steps per update (0: frozen world model).
    :param critic_iterations: passes over the imagined data per update (0: frozen critics).
    :param critic_minibatches: minibatches per pass (each ``batch_size * horizon / n``).
    :param consistency_coef: weight of the latent consistency loss.
    :param reward_coef: weight of the reward loss.
    :param termination_coef: weight of the termination loss.
    :param rho: per-step discount of the world-model loss over the window.
    :param actor_max_grad_norm: actor gradient clip.
    :param critic_max_grad_norm: critic gradient clip.
    :param model_max_grad_norm: world-model gradient clip.
    :param normalize_returns: divide the actor loss by a running std of imagined
        returns (else by ``horizon``).
    :param symexp_rewards: for a two-hot reward head, differentiate the reward
        after ``symexp`` (``False``: in symlog space, as the authors' code).
    :param bc_coef: weight of a behaviour-cloning term in the actor loss (squared distance
        of the deterministic action to the replayed action at the start state); 0 (default)
        is the paper's actor. For offline policy extraction from small datasets it keeps
        the policy where the world model is accurate (see the offline docs).
    :param nan_policy: ``"raise"`` on a non-finite observation or reward, or
        ``"skip"``: the transition is stored as invalid (never trained on), counted
        in ``train/skipped_transitions`` and non-finite entries of the observation
        are replaced by zeros for acting.
    :param use_bf16: run the forward passes of training under bf16 autocast (CPU or
        GPU): about 1.8x faster per update at the paper's sizes on a CPU with native
        bf16 instructions (AVX512-BF16 or AMX), about 10x slower on one without (a
        warning says so), slower for the small default preset; sums and discounts
        stay in float32.
    :param cuda_graphs: on a GPU, record each training step (world model, actor,
        critic minibatch) as a CUDA graph after three eager warm-up calls and replay
        it: PWM's small networks make an eager update launch-bound. Optimiser steps
        stay eager. No effect on CPU; a step that cannot be recorded runs eagerly
        with a warning.
    :param compile_updates: on a CPU, run the training losses (world model, actor
        rollout, critic) through ``torch.compile``, which fuses the elementwise work
        between the matmuls into a few loops. Faster per update, but the first update
        compiles for minutes (later runs reuse torch's on-disk cache); needs a C++
        compiler (``g++`` or ``$CXX``; checked at the first update, so loading and
        predicting need none). No effect on a GPU (CUDA graphs cover it there).
    :param log_every: updates between two records of the training metrics
        (reading losses back from a GPU costs a host sync).
    :param replay_buffer_class: a :class:`SequenceReplayBuffer` subclass (default: it).
    :param replay_buffer_kwargs: extra arguments of the replay buffer.
    :param policy_kwargs: network options, see :class:`PWMPolicy`.
    :param stats_window_size: episodes averaged for rollout logging.
    :param tensorboard_log: TensorBoard log folder (``None``: none).
    :param verbose: 0 silent, 1 info, 2 debug.
    :param seed: random seed (identical results on CPU).
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    :param observation_space: with ``env=None``, the observation space to build the agent
        for (e.g. an offline dataset's ``observation_space``); ignored when an env is given.
    :param action_space: with ``env=None``, the ``Box`` action space to build the agent for.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: PWMPolicy
    replay_buffer: SequenceReplayBuffer

    def __init__(
        self,
        policy: str | type[PWMPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 5e-4,
        learning_rate_final: float | None = 1e-5,
        model_learning_rate: float = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int | str = "auto",
        batch_size: int = 64,
        horizon: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        model_iterations: int = 1,
        critic_iterations: int = 2,
        critic_minibatches: int = 4,
        consistency_coef: float = 20.0,
        reward_coef: float = 0.1,
        termination_coef: float = 1.0,
        rho: float = 0.99,
        actor_max_grad_norm: float = 1.0,
        critic_max_grad_norm: float = 100.0,
        model_max_grad_norm: float = 20.0,
        normalize_returns: bool = True,
        symexp_rewards: bool = True,
        bc_coef: float = 0.0,
        nan_policy: str = "raise",
        use_bf16: bool = False,
        cuda_graphs: bool = True,
        compile_updates: bool = False,
        log_every: int = 100,
        replay_buffer_class: type[SequenceReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: torch.device | str = "auto",
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        checks.check_hyperparameters(
            horizon, batch_size, model_iterations, critic_iterations, critic_minibatches, nan_policy, replay_buffer_class
        )
        checks.check_learning_starts_value(learning_starts)
        # Constructor arguments, saved as plain JSON for pickle-free loading.
        self._init_kwargs = {k: v for k, v in locals().items() if k not in _NOT_SAVED_ARGS}
        if replay_buffer_class is SequenceReplayBuffer:
            self._init_kwargs["replay_buffer_class"] = None
        checks.check_policy_kwargs(policy, self.policy_aliases, policy_kwargs)
        serialization.check_saveable(self._init_kwargs, policy_kwargs)
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate,
            buffer_size=buffer_size,
            learning_starts=0 if learning_starts == "auto" else int(learning_starts),  # "auto": set once the env is known
            batch_size=batch_size,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class or SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            support_multi_env=True,
            sde_support=False,
        )
        self.learning_rate_final = learning_rate_final
        self.update_config = UpdateConfig(**{f.name: self._init_kwargs[f.name] for f in fields(UpdateConfig)})
        self.model_learning_rate = model_learning_rate
        self.horizon = horizon
        self.nan_policy = nan_policy
        self.log_every = log_every
        self.skipped_transitions = 0
        # "auto" until the random phase has ended; the bound is set from the first env.
        self._auto_learning_starts = learning_starts == "auto"
        self._learning_starts_bound: int | None = None
        self._n_offline_updates = 0
        self._raw_last_obs: np.ndarray | None = None
        self._dict_observation_space: spaces.Dict | None = None
        if not bc_coef >= 0.0 or not np.isfinite(bc_coef):
            raise ValueError(f"bc_coef must be a finite number >= 0 (0 turns the cloning term off), got {bc_coef!r}.")
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1 (updates between metric records), got {log_every}.")
        if self.env is not None:
            self._dict_observation_space = checks.check_env_spaces(self.env, policy)
            self._resolve_learning_starts()
        elif observation_space is not None or action_space is not None or _init_setup_model:
            self._set_spaces(policy, observation_space, action_space)
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ setup
    def _set_spaces(
        self, policy: str | type[PWMPolicy], observation_space: spaces.Space | None, action_space: spaces.Space | None
    ) -> None:
        """Use explicit spaces for an agent built without an env (offline training)."""
        if observation_space is None or action_space is None:
            raise ValueError(
                "PWM needs an env, or (for offline training) both observation_space and action_space, e.g. "
                "PWM('MlpPolicy', None, observation_space=dataset.observation_space, "
                "action_space=dataset.action_space); a dataset built from arrays has them only when "
                "from_episodes(..., observation_space=..., action_space=...) was given them."
            )
        self._dict_observation_space = checks.check_spaces(observation_space, action_space, policy)
        self.observation_space = (
            flat_box(observation_space) if isinstance(observation_space, spaces.Dict) else observation_space
        )
        self.action_space = action_space
        self.n_envs = 1

    @staticmethod
    def _wrap_env(env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
        """Adapt gymnasium vector envs, vectorise single envs and flatten ``Dict`` observations."""
        return checks.wrap_env(env, verbose, monitor_wrapper, OffPolicyAlgorithm._wrap_env)

    def _resolve_learning_starts(self) -> None:
        """With ``learning_starts="auto"``, set it to its bound from the first env the agent
        has; then check the value against the horizon."""
        if self._auto_learning_starts and self._learning_starts_bound is None and self.env is not None:
            if self.learning_starts != 0:  # set by hand on an agent built without an env
                self._auto_learning_starts = False
            else:
                self._learning_starts_bound = warmup.learning_starts_bound(self.env, self.horizon)
                self.learning_starts = self._learning_starts_bound
        checks.check_learning_starts(self.learning_starts, self.horizon, self.n_envs)

    def _settle_learning_starts(self) -> None:
        """With ``learning_starts="auto"``, end the random phase once it holds five episodes
        and 1000 steps (see :mod:`pwm_agent.pwm.warmup`); a value set by hand is kept."""
        if not self._auto_learning_starts or self._learning_starts_bound is None:
            return
        if self.learning_starts != self._learning_starts_bound or self.num_timesteps >= self.learning_starts:
            self._auto_learning_starts = False  # set by hand, or the bound was reached
        elif warmup.random_phase_done(self.num_timesteps, self._episode_num, self.horizon, self.n_envs):
            self.learning_starts = self.num_timesteps
            self._auto_learning_starts = False
            if self.verbose >= 1:
                self.logger.info(f"Random phase over after {self.num_timesteps} steps ({self._episode_num} episodes).")

    def _setup_lr_schedule(self) -> None:
        schedule = decaying_schedule(self.learning_rate, self.learning_rate_final)
        if schedule is None:
            super()._setup_lr_schedule()
        else:
            self.lr_schedule = schedule

    def _setup_model(self) -> None:
        super()._setup_model()
        self.policy.dict_observation_space = self._dict_observation_space
        self.policy.cuda_graphs = self.update_config.cuda_graphs
        self.updater = Updater(self.policy, self.update_config, self.lr_schedule(1.0), self.model_learning_rate)
        self._warned_partial_fallback = False  # _sample_windows warns once per agent
        self._warned_decay_restart = False  # _setup_learn warns once per agent

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "updater.actor_optimizer", "updater.critic_optimizer", "updater.model_optimizer"], []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "updater", "update_config", "_raw_last_obs",
                "_warned_partial_fallback", "_warned_decay_restart"]

    # --------------------------------------------------------------- learning
    def learn(
        self: SelfPWM,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "PWM",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPWM:
        """Train for ``total_timesteps`` env steps (summed over envs), as in SB3."""
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        if self.env is None:
            raise ValueError("This PWM agent has no env: pass one with `set_env(env)` or `PWM.load(path, env=env)`.")
        self._resolve_learning_starts()
        offline._require_one_task(self)
        env_will_reset = reset_num_timesteps or self._last_obs is None
        decayed = not reset_num_timesteps and self.num_timesteps > 0 and self._decays()
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        self._settle_learning_starts()  # a loaded agent may be past its random phase already
        self._warn_if_buffer_lost()
        if decayed and not self._warned_decay_restart:
            self._warned_decay_restart = True
            warnings.warn(
                f"This learn() call continues a run whose learning rate decayed to learning_rate_final="
                f"{self.learning_rate_final} at the end of the previous call; it decays again from "
                f"{self.lr_schedule(self._current_progress_remaining):.3g} (SB3's progress). Train in one learn() "
                "call, or pass learning_rate_final=None for a constant rate.",
                UserWarning, stacklevel=5,
            )
        if env_will_reset:
            self.replay_buffer.mark_episode_boundary()
            self._raw_last_obs = np.array(self._last_obs, copy=True)
            self._last_obs = self._finite_for_acting(self._last_obs)  # type: ignore[arg-type]
        return result

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer`` (a pickle: load only files you trust) for a buffer
        written by :meth:`save_replay_buffer`. The first step stored next starts a new
        episode chain: no window links the file's last step to the live env."""
        previous = self.replay_buffer
        super().load_replay_buffer(path, truncate_last_traj)
        loaded = self.replay_buffer
        problem = None
        if not isinstance(loaded, SequenceReplayBuffer):
            problem = (f"holds a {type(loaded).__name__}, not PWM's SequenceReplayBuffer (a buffer of another "
                       "algorithm has no episode chains to sample windows from)")
        elif self.env is not None and loaded.n_envs != self.n_envs:
            problem = f"was filled by {loaded.n_envs} envs, this agent runs {self.n_envs}"
        if problem is not None:
            self.replay_buffer = previous
            raise ValueError(f"The replay buffer file {path} {problem}; the agent keeps its own buffer.")
        loaded.mark_episode_boundary()

    def _decays(self) -> bool:
        """Whether the actor/critic rate follows PWM's own linear decay."""
        return self.learning_rate_final is not None and constant_value(self.learning_rate) is not None

    def _warn_if_buffer_lost(self) -> None:
        """Training past ``learning_starts`` on an empty buffer (a loaded agent whose buffer
        was not loaded) updates on the first few steps: say how to avoid it."""
        if self.num_timesteps >= self.learning_starts and self.replay_buffer.size() == 0:
            warnings.warn(
                f"Training resumes at {self.num_timesteps} env steps (past learning_starts={self.learning_starts}) "
                "with an empty replay buffer (PWM.save does not store it): updates start at once on the first "
                "few steps. Load the buffer first with agent.load_replay_buffer(path) (written by "
                "save_replay_buffer or CheckpointCallback(save_replay_buffer=True)), or collect anew with "
                "learn(..., reset_num_timesteps=True).",
                RuntimeWarning, stacklevel=5,  # the user's learn() call
            )

    def train(self, gradient_steps: int, batch_size: int) -> None:
        """Run ``gradient_steps`` PWM updates (world model, actor, critics)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.updater.actor_optimizer, self.updater.critic_optimizer])
        for _ in range(gradient_steps):
            try:
                batch = self._sample_windows(batch_size)
            except NoValidWindowError as err:
                warnings.warn(str(err), RuntimeWarning, stacklevel=2)
                return
            self.updater.update(batch, lambda: self._sample_windows(batch_size))
            self._n_updates += 1
            if self._n_updates % self.log_every == 1 or self.log_every == 1:
                self._record_metrics()
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")  # as SB3, every call

    def _sample_windows(self, batch_size: int) -> WindowBatch:
        """Windows of ``horizon`` steps; while every stored episode is shorter than that,
        windows that run past episode ends (masked, as with ``partial_windows=True``), so
        training starts instead of waiting for an episode the untrained policy may never
        reach."""
        buffer, env = self.replay_buffer, self._vec_normalize_env
        try:
            return buffer.sample_windows(batch_size, self.horizon, env)
        except NoValidWindowError as err:
            if buffer.partial_windows:
                raise
            if not self._warned_partial_fallback:
                self._warned_partial_fallback = True
                warnings.warn(
                    f"{err} Until one is stored, PWM samples windows that run past episode ends "
                    "(masked out of the losses, as with replay_buffer_kwargs=dict(partial_windows=True)).",
                    RuntimeWarning, stacklevel=3,
                )
            return buffer.sample_windows(batch_size, self.horizon, env, partial=True)

    def collect_rollouts(self, env: VecEnv, callback: BaseCallback, *args: Any, **kwargs: Any) -> RolloutReturn:
        """SB3's rollout loop, then the end of an ``"auto"`` random phase. When a callback
        stops training mid-step, that env step is never stored, so the next ``learn()`` must
        reset the env (and the episode chain)."""
        rollout = super().collect_rollouts(env, callback, *args, **kwargs)
        self._settle_learning_starts()
        if not rollout.continue_training:
            self._last_obs = None
        return rollout

    def _record_metrics(self) -> None:
        for key, value in self.updater.pop_metrics().items():
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/skipped_transitions", self.skipped_transitions)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Store the transition with its true terminal observation; check it is finite."""
        vec_norm = self._vec_normalize_env
        if vec_norm is not None:
            new_obs_, reward_ = vec_norm.get_original_obs(), vec_norm.get_original_reward()
        else:
            # ``_last_obs`` may have been zeroed for acting (nan_policy="skip"): store the raw one.
            raw_last = self._raw_last_obs if self._raw_last_obs is not None else self._last_obs
            self._last_original_obs, new_obs_, reward_ = raw_last, new_obs, reward
        next_obs = np.array(new_obs_, dtype=np.float32, copy=True)
        for i in np.flatnonzero(dones):
            terminal = infos[i].get("terminal_observation")
            if terminal is not None:
                next_obs[i] = vec_norm.unnormalize_obs(terminal) if vec_norm is not None else terminal
        obs = np.asarray(self._last_original_obs, dtype=np.float32)
        valid = checks.finite_transitions(obs, next_obs, reward_)
        if not valid.all():
            self._handle_non_finite(valid)
            obs, next_obs, reward_ = checks.zero_non_finite(obs), checks.zero_non_finite(next_obs), checks.zero_non_finite(reward_)
        new_obs = self._finite_for_acting(new_obs)  # type: ignore[arg-type]
        assert isinstance(replay_buffer, SequenceReplayBuffer)
        replay_buffer.add(obs, next_obs, buffer_action, reward_, dones, infos, valid=valid)
        self._raw_last_obs = None if vec_norm is not None else np.array(new_obs_, copy=True)
        self._last_obs = new_obs  # type: ignore[assignment]
        if vec_norm is not None:
            self._last_original_obs = new_obs_

    def _finite_for_acting(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` with non-finite entries zeroed (``nan_policy="skip"``), or an error.

        The raw observation is still what gets stored: the transition that starts
        from it is then invalid and counted in ``skipped_transitions``.
        """
        finite = np.isfinite(obs).all(axis=-1)
        if finite.all():
            return obs
        if self.nan_policy == "raise":
            self._handle_non_finite(finite)
        return checks.zero_non_finite(obs)

    def _handle_non_finite(self, valid: np.ndarray) -> None:
        bad = np.flatnonzero(~valid).tolist()
        if self.nan_policy == "raise":
            raise ValueError(
                f"Non-finite observation or reward from env index(es) {bad} at step {self.num_timesteps}. "
                "Fix the environment (SB3's VecCheckNan finds the source), or pass nan_policy='skip' "
                "to store such transitions as invalid and never train on them."
            )
        self.skipped_transitions += len(bad)

    @classmethod
    def from_pretrained(
        cls: type[SelfPWM],
        path: str,
        task: str | int,
        env: GymEnv | str | None = None,
        task_init: str | int = "mean",
        freeze_world_model: bool = True,
        **kwargs: Any,
    ) -> SelfPWM:
        """A single-task agent on the world model of a TD-MPC2/PWM multi-task checkpoint.

        The agent acts in the task's own observation and action spaces; padding to the
        model's dims and the task id are handled inside the world model, so ``predict``
        takes the task's observation. Actor and critics are new (ready for
        :meth:`extract_policy` or :meth:`learn`).

        :param path: a checkpoint in either TD-MPC2 key layout (sizes read from the file).
        :param task: a task name of the checkpoint's set (MT30/MT80) or an id; or any other
            name for a *new* task, which then needs ``env`` (its spaces must fit the
            model's padded dims) and gets a new task-embedding row.
        :param env: the task's env (optional for known tasks: spaces then come from the
            task table, actions in ``[-1, 1]``).
        :param task_init: the new task's embedding row: ``"mean"`` of all rows, or a copy
            of a named (or numbered) task's row.
        :param freeze_world_model: keep the world model fixed in :meth:`learn`
            (``model_iterations=0``); ``False`` fine-tunes it on the agent's data.
        :param kwargs: other :class:`PWM` arguments (``horizon``, ``batch_size``,
            ``policy_kwargs`` for actor/critic sizes, ...). With the world model
            frozen, ``learning_rate`` defaults to ``1e-4`` (``5e-4`` otherwise, decaying to
            ``learning_rate_final`` in both cases): extraction from a frozen pre-trained model
            was steadier and scored higher with it (see the multi-task docs).
        """
        return pretrained.from_pretrained(cls, path, task, env, task_init, freeze_world_model, **kwargs)

    # ---------------------------------------------------------------- acting
    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        plan: bool | MPPIConfig = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions for one observation ``[O]`` or a batch ``[N, O]``, as SB3's ``predict``.

        :param plan: ``False`` (default): act with the actor alone (about 0.1 ms on a CPU).
            ``True`` or an :class:`~pwm_agent.planning.MPPIConfig`: plan with MPPI over the
            world model, seeded by the actor and bootstrapped by the critics (TD-MPC2
            style; the paper's planning option). Planning costs ``iterations`` model
            rollouts of ``horizon`` steps for ``num_samples + num_policy_samples``
            candidates per observation: milliseconds to tens of milliseconds on a CPU.
        """
        if not plan:
            return self.policy.predict(observation, state, episode_start, deterministic)
        config = plan if isinstance(plan, MPPIConfig) else MPPIConfig()
        planner = MPPIPlanner(self.policy.world_model, self.policy.actor, self.policy.critic, self.gamma, config)
        return self.policy.plan(observation, planner, deterministic), state

    # ---------------------------------------------------------------- offline
    def pretrain_world_model(
        self,
        data: OfflineDataset,
        gradient_steps: int,
        batch_size: int | None = None,
        validation_fraction: float = 0.05,
        eval_freq: int = 1000,
        checkpoint_freq: int = 0,
        checkpoint_path: str = "checkpoints",
        callback: MaybeCallback = None,
        progress_bar: bool = False,
        tb_log_name: str = "PWM_pretrain",
    ) -> dict[str, float]:
        """Train the world model alone on windows of an offline dataset.

        :param data: episodes from :mod:`pwm_agent.datasets` (dims and action bounds
            are checked against the agent's spaces).
        :param gradient_steps: world-model gradient steps (each on ``batch_size`` windows
            of ``horizon`` transitions; default: the agent's ``batch_size``).
        :param validation_fraction: episodes held out; their loss is logged as
            ``pretrain/val_*`` every ``eval_freq`` steps (0: no hold-out).
        :param checkpoint_freq: save the agent (optimisers included) every so many steps
            to ``checkpoint_path/pwm_pretrain_<steps>_steps.zip`` (0: never). To resume,
            ``PWM.load`` a checkpoint and call this method again.
        :param callback: SB3 callback(s); ``on_step`` runs after every gradient step
            (``n_calls`` counts them) and returning ``False`` stops.
        :param progress_bar: show a progress bar over gradient steps.
        :return: the last held-out metrics (``loss``, ``consistency_loss``, ``reward_loss``, ``termination_loss``).

        Training metrics go to the SB3 logger under ``pretrain/`` every ``log_every``
        steps. A later :meth:`learn` or :meth:`extract_policy` continues from this model.
        """
        return offline.pretrain_world_model(
            self, data, gradient_steps, batch_size, validation_fraction, eval_freq, checkpoint_freq,
            checkpoint_path, callback, progress_bar, tb_log_name,
        )

    def extract_policy(
        self,
        data: OfflineDataset,
        gradient_steps: int,
        batch_size: int | None = None,
        fine_tune_world_model: bool = False,
        eval_env: GymEnv | None = None,
        eval_freq: int = 1000,
        n_eval_episodes: int = 10,
        callback: MaybeCallback = None,
        progress_bar: bool = False,
        tb_log_name: str = "PWM_extract",
        keep_best: bool = False,
        actor_ema_decay: float = 0.0,
    ) -> offline.OfflineEvaluation | None:
        """Train the actor and critics through imagination from dataset start states (no env).

        Each step draws ``batch_size`` windows, takes their first observations as
        imagination start states, and runs the actor and critic updates of :meth:`learn`
        against the world model, which stays frozen unless ``fine_tune_world_model``.
        The actor/critic learning rate follows the agent's schedule over the call.

        :param eval_env: an env (or id) to evaluate the deterministic policy on every
            ``eval_freq`` steps over ``n_eval_episodes`` episodes (logged as ``eval/mean_reward``),
            or ``None``.
        :param callback: SB3 callback(s), called after every gradient step. Offline
            training has no training env: use callbacks that do not need one
            (for checkpoints use :class:`~pwm_agent.pwm.OfflineCheckpointCallback`, which
            names files by gradient steps; for evaluation use ``eval_env``).
        :param keep_best: with ``eval_env``, end with the weights that evaluated best
            (evaluated once more after the last step) instead of the last ones: extraction
            from a frozen model can peak and then drift as the actor exploits model errors.
            The choice uses ``eval_env``'s episodes, so report the result on other episodes.
        :param actor_ema_decay: with a value in (0, 1) (e.g. ``0.99``), keep an exponential
            moving average of the actor's weights (Polyak averaging over about
            ``1 / (1 - decay)`` steps, see :class:`~pwm_agent.pwm.averaging.ActorAveraging`):
            training goes on with the trained weights, evaluations use the average, and
            the call ends with the average in the actor (the best-evaluated one with
            ``keep_best``); a further call starts a new average from there. ``0``
            (default) keeps the last weights.
        :return: the :class:`~pwm_agent.pwm.offline.OfflineEvaluation` (``steps``,
            ``results``, ``last_mean_reward``, ``best_mean_reward``, ``best_step``), or
            ``None`` without ``eval_env``.
        """
        return offline.extract_policy(
            self, data, gradient_steps, batch_size, fine_tune_world_model, eval_env, eval_freq,
            n_eval_episodes, callback, progress_bar, tb_log_name, keep_best, actor_ema_decay,
        )

    # ----------------------------------------------------------- persistence
    def save(self, path: Any, exclude: Any = None, include: Any = None) -> None:
        """Save in SB3's zip format, atomically (a crash never leaves a partial file).

        The archive also holds ``pwm_config.json``, from which :meth:`load`
        rebuilds the agent without unpickling anything.
        """
        serialization.atomic_save(self, path, lambda target: BaseAlgorithm.save(self, target, exclude, include))

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfPWM],
        path: Any,
        env: GymEnv | None = None,
        device: torch.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfPWM:
        """Load an agent saved by :meth:`save`.

        Nothing in the file is unpickled: hyperparameters and spaces come from
        ``pwm_config.json`` and tensors from ``torch.load(..., weights_only=True)``.
        The env's last observation is not part of the file, so the first
        ``learn()`` after loading always resets the env (as SB3's
        ``force_reset=True``; the argument is accepted for compatibility).
        ``kwargs`` override saved constructor arguments (unknown names raise
        ``TypeError``); ``custom_objects`` does too, for the names that are
        constructor arguments, and its other entries are ignored (as in SB3).
        ``print_system_info`` prints the saved and the current system info, as SB3 does.
        """
        if print_system_info:
            serialization.print_system_info(path)
        return serialization.safe_load(cls, path, env, device, custom_objects, kwargs)
