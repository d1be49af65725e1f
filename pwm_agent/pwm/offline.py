"""Offline training of a PWM agent: world-model pretraining and policy extraction from a dataset."""

from __future__ import annotations

import os
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import configure_logger, update_learning_rate
from tqdm.auto import tqdm

from pwm_agent.buffers import WindowBatch
from pwm_agent.datasets.dataset import OfflineDataset
from pwm_agent.pwm.averaging import ActorAveraging
from pwm_agent.pwm.callbacks import warn_env_step_callbacks
from pwm_agent.pwm.distributed import GradientSync

if TYPE_CHECKING:
    from pwm_agent.pwm.pwm import PWM

__all__ = ["OfflineEvaluation", "extract_policy", "pretrain_world_model"]

VALIDATION_WINDOWS = 1024


def _prepare(model: PWM, data: OfflineDataset, tb_log_name: str) -> None:
    if not isinstance(data, OfflineDataset):
        raise TypeError(
            f"Expected an OfflineDataset (from pwm_agent.datasets.load / collect / OfflineDataset.from_episodes), "
            f"got {type(data).__name__}."
        )
    world_model = model.policy.world_model
    bound = world_model.bound_task
    task_ids = sorted(set(np.asarray(data.tasks).tolist())) if data.tasks is not None else []
    if world_model.multitask and bound is None:
        if data.tasks is None or task_ids[-1] >= world_model.config.num_tasks or task_ids[0] < 0:
            raise ValueError(
                f"{data.source}: a multi-task world model of {world_model.config.num_tasks} tasks needs data with "
                f"task ids in 0..{world_model.config.num_tasks - 1}; got {task_ids or 'no task ids'}."
            )
    elif len(task_ids) > 1:
        raise ValueError(
            f"{data.source} holds several tasks ({task_ids}); this agent is single-task. Select one task "
            "when loading (datasets.load(path, task=...))."
        )
    if data.tasks is not None and bound is not None and int(np.asarray(data.tasks)[0]) != bound:
        raise ValueError(
            f"{data.source} holds task {int(np.asarray(data.tasks)[0])}, but the agent is bound to task {bound}; "
            "load the data of the agent's task (datasets.load(path, task=...))."
        )
    data.check_spaces(model.observation_space, model.action_space)
    data.check_finite()
    if data.num_windows(model.horizon) == 0:
        raise ValueError(
            f"{data.source}: no episode has {model.horizon} transitions (the agent's horizon); "
            "use longer episodes or an agent with a shorter horizon."
        )
    if not model._custom_logger:
        model._logger = configure_logger(model.verbose, model.tensorboard_log, tb_log_name, True)
    if data.skipped_episodes:
        model.logger.record("offline/skipped_episodes", data.skipped_episodes)


def _sampler(
    model: PWM, data: OfflineDataset, batch_size: int | None, episodes: np.ndarray | None = None, salt: int = 0
) -> Callable[[], WindowBatch]:
    seed = None if model.seed is None else model.seed + model._n_offline_updates + 7919 * salt
    rng = np.random.default_rng(seed)
    size = batch_size or model.batch_size
    return lambda: data.sample_windows(size, model.horizon, rng, model.device, model.action_space, episodes)


def _make_callback(
    model: PWM, callback: MaybeCallback, extra: list[BaseCallback], before: list[BaseCallback] | None = None
) -> BaseCallback:
    """The user's ``callback`` (one, a list or ``None``) between ``before`` and ``extra``, initialised."""
    callbacks = list(callback) if isinstance(callback, list) else ([callback] if callback is not None else [])
    for message in warn_env_step_callbacks(callbacks):
        warnings.warn(message, UserWarning, stacklevel=4)
    merged = CallbackList([*(before or []), *callbacks, *extra])
    merged.init_callback(model)
    return merged


def _run(
    model: PWM,
    steps: int,
    step_fn: Callable[[], None],
    callback: BaseCallback,
    progress_bar: bool,
    desc: str,
    every: Callable[[int], None],
    sync: GradientSync | None = None,
) -> None:
    """Call ``step_fn`` ``steps`` times with callbacks, logging and a progress bar
    (with ``sync``, a callback's stop on any rank stops every rank)."""
    callback.on_training_start(locals(), globals())
    with tqdm(total=steps, disable=not progress_bar, desc=desc, unit="step") as bar:
        for i in range(1, steps + 1):
            step_fn()
            model._n_offline_updates += 1
            every(i)
            bar.update(1)
            keep_going = callback.on_step()
            if not (sync.all_true(keep_going) if sync is not None else keep_going):
                break
    callback.on_training_end()


class OfflineEvaluation(BaseCallback):
    """Evaluates the deterministic policy on ``eval_env`` every ``eval_freq`` gradient steps.

    Unlike SB3's ``EvalCallback`` it needs no training env (offline training has none).
    Results: ``steps`` (gradient steps), ``results`` (``[n_evals, n_episodes]`` returns),
    ``last_mean_reward``, ``best_mean_reward`` and ``best_step``; logged as ``eval/mean_reward``.

    With ``keep_best`` it holds a copy of the weights that evaluated best (the actor,
    critics and return statistics, plus the world model when ``world_model_trains``),
    evaluates once more at the end of training unless the last step was just evaluated,
    and puts the best weights back into the policy (as SB3's ``best_model_save_path``,
    without a file). The optimiser states are left as they are. With ``averaging``
    (an :class:`~pwm_agent.pwm.averaging.ActorAveraging`) it evaluates, and keeps, the
    averaged actor.
    """

    def __init__(self, eval_env: GymEnv, eval_freq: int, n_eval_episodes: int, keep_best: bool = False,
                 world_model_trains: bool = False, averaging: ActorAveraging | None = None) -> None:
        super().__init__()
        if isinstance(eval_env, str):
            eval_env = gym.make(eval_env)
        self.eval_env = Monitor(eval_env) if isinstance(eval_env, gym.Env) else eval_env
        self.eval_freq, self.n_eval_episodes = eval_freq, n_eval_episodes
        self.keep_best, self.world_model_trains, self.averaging = keep_best, world_model_trains, averaging
        self.steps: list[int] = []
        self.results: list[list[float]] = []
        self.last_mean_reward = self.best_mean_reward = -float("inf")
        self.best_step: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.keep_best:
            return
        if not self.steps or self.steps[-1] != self.n_calls:
            self.evaluate()
        if self._best_state is not None:
            self.model.policy.load_state_dict(self._best_state, strict=False)

    def evaluate(self) -> float:
        """Run the evaluation now; returns the mean return."""
        with self.averaging.applied() if self.averaging is not None else nullcontext():
            returns, _ = evaluate_policy(
                self.model, self.eval_env, self.n_eval_episodes, deterministic=True, return_episode_rewards=True
            )
            self.steps.append(self.n_calls)
            self.results.append([float(r) for r in returns])
            self.last_mean_reward = float(np.mean(returns))
            if self.last_mean_reward > self.best_mean_reward:
                self.best_mean_reward, self.best_step = self.last_mean_reward, self.n_calls
                if self.keep_best:
                    self._best_state = self._trained_state()
        self.logger.record("eval/mean_reward", self.last_mean_reward)
        self.logger.record("eval/std_reward", float(np.std(returns)))
        return self.last_mean_reward

    def _trained_state(self) -> dict[str, torch.Tensor]:
        """A copy of the parameters and statistics that policy extraction changes."""
        state = self.model.policy.state_dict()
        keep = ("actor.", "critic.", "return_rms.", "reward_rms.", *(("world_model.",) if self.world_model_trains else ()))
        return {k: v.detach().clone() for k, v in state.items() if k.startswith(keep)}


def _validation_batch(model: PWM, data: OfflineDataset, held_out: np.ndarray) -> WindowBatch | None:
    n = min(VALIDATION_WINDOWS, data.num_windows(model.horizon, held_out))
    if n == 0:
        return None
    rng = np.random.default_rng(0)
    return data.sample_windows(n, model.horizon, rng, model.device, model.action_space, held_out)


@torch.no_grad()
def validation_loss(model: PWM, batch: WindowBatch) -> dict[str, float]:
    """World-model loss and its parts on a held-out batch (no parameter or statistic changes)."""
    loss, parts = model.updater.world_model_loss(batch, update_stats=False)
    return {"loss": float(loss), **{k: float(v) for k, v in parts.items()}}


def pretrain_world_model(
    model: PWM,
    data: OfflineDataset,
    gradient_steps: int,
    batch_size: int | None = None,
    validation_fraction: float = 0.05,
    eval_freq: int = 1000,
    checkpoint_freq: int = 0,
    checkpoint_path: str | os.PathLike[str] = "checkpoints",
    callback: MaybeCallback = None,
    progress_bar: bool = False,
    tb_log_name: str = "PWM_pretrain",
) -> dict[str, float]:
    """See :meth:`pwm_agent.PWM.pretrain_world_model`. Returns the last validation metrics."""
    _prepare(model, data, tb_log_name)
    sync = GradientSync.from_environment()
    train_ids, val_batch = np.arange(data.num_episodes), None
    if validation_fraction > 0 and data.num_episodes >= 2:
        train_ids, held_ids = data.split_episodes(validation_fraction, seed=model.seed or 0)
        if data.num_windows(model.horizon, train_ids) == 0:  # keep every usable episode for training
            train_ids = np.arange(data.num_episodes)
        else:
            val_batch = _validation_batch(model, data, held_ids)
    is_main = sync is None or sync.rank == 0
    if sync is not None:
        train_ids = _shard(train_ids, sync, data)
        if not sync.all_true(data.num_windows(model.horizon, train_ids) > 0):
            raise ValueError(
                f"{data.source}: some rank's share of the episodes has none of {model.horizon} transitions; "
                "use fewer processes or longer episodes."
            )
        sync.broadcast_module(model.policy)
        if not is_main:
            model.set_logger(Logger(folder=None, output_formats=[]))
            checkpoint_freq, progress_bar = 0, False
    sample = _sampler(model, data, batch_size, train_ids, salt=0 if sync is None else sync.rank)
    model.policy.set_training_mode(True)
    model.updater.sync = sync
    last: dict[str, float] = {}

    def every(i: int) -> None:
        nonlocal last
        if val_batch is not None and ((eval_freq > 0 and i % eval_freq == 0) or i == gradient_steps):
            last = validation_loss(model, val_batch)
            for key, value in last.items():
                model.logger.record(f"pretrain/val_{key}", value)
        if i % model.log_every == 0 or i == gradient_steps:
            _dump(model, "pretrain", model._n_offline_updates)
        if checkpoint_freq > 0 and i % checkpoint_freq == 0:
            Path(checkpoint_path).mkdir(parents=True, exist_ok=True)
            model.save(Path(checkpoint_path) / f"pwm_pretrain_{model._n_offline_updates}_steps")

    def step() -> None:
        metrics = model.updater.train_world_model(sample())
        model.updater.accumulate(metrics)

    try:
        _run(model, gradient_steps, step, _make_callback(model, callback, []), progress_bar, "pretrain", every, sync)
    finally:
        model.updater.sync = None
    return last


def _require_one_task(model: PWM) -> None:
    world_model = model.policy.world_model
    if world_model.multitask and world_model.bound_task is None:
        raise ValueError(
            "A policy acts in one task, but this agent's world model is multi-task and bound to none: build a "
            "per-task agent with PWM.from_pretrained(checkpoint, task=...) (save the world model with "
            "pwm_agent.checkpoints.save_world_model), or call agent.policy.world_model.bind_task(task_id)."
        )


def _shard(episodes: np.ndarray, sync: GradientSync, data: OfflineDataset) -> np.ndarray:
    """This rank's share of the training episodes (every ``world_size``-th one)."""
    mine = episodes[sync.rank :: sync.world_size]
    if len(mine) == 0:
        raise ValueError(
            f"{data.source}: {len(episodes)} training episode(s) cannot be shared by {sync.world_size} ranks; "
            "use more episodes or fewer processes."
        )
    return mine


def extract_policy(
    model: PWM,
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
) -> OfflineEvaluation | None:
    """See :meth:`pwm_agent.PWM.extract_policy`. Returns the evaluation callback (or ``None``)."""
    _prepare(model, data, tb_log_name)
    _require_one_task(model)
    if keep_best and eval_env is None:
        raise ValueError("keep_best=True selects weights by evaluation: pass eval_env (an env or env id) too.")
    averaging = ActorAveraging(model.policy.actor, actor_ema_decay) if actor_ema_decay != 0.0 else None
    sample = _sampler(model, data, batch_size)
    model.policy.set_training_mode(True)
    updater = model.updater
    optimizers = [updater.actor_optimizer, updater.critic_optimizer]
    # Fine-tuning trains the world model even when the agent's own setting freezes it.
    model_steps = max(updater.config.model_iterations, 1) if fine_tune_world_model else 0
    evaluator = None
    if eval_env is not None:
        evaluator = OfflineEvaluation(eval_env, eval_freq, n_eval_episodes, keep_best,
                                      world_model_trains=model_steps > 0, averaging=averaging)

    done = [0]

    def step() -> None:
        # The actor/critic learning rate follows the agent's schedule over this call.
        model._current_progress_remaining = 1.0 - done[0] / max(gradient_steps, 1)
        rate = model.lr_schedule(model._current_progress_remaining)
        for optimizer in optimizers:
            update_learning_rate(optimizer, rate)
        model.logger.record("extract/learning_rate", rate)
        updater.update(sample(), sample, model_steps=model_steps)
        done[0] += 1

    def every(i: int) -> None:
        if i % model.log_every == 0 or i == gradient_steps:
            _dump(model, "extract", model._n_offline_updates)

    # Averaging before the user's callbacks (its steps leave the actor as trained, and at
    # the end they see the average the agent keeps) and before the evaluator (which
    # evaluates, and with keep_best keeps, the average).
    before = [averaging] if averaging is not None else []
    extra = [evaluator] if evaluator is not None else []
    _run(model, gradient_steps, step, _make_callback(model, callback, extra, before), progress_bar, "extract", every)
    return evaluator


def _dump(model: PWM, prefix: str, step: int) -> None:
    for key, value in model.updater.pop_metrics().items():
        model.logger.record(f"{prefix}/{key}", value)
    model.logger.record(f"{prefix}/gradient_steps", step)
    model.logger.dump(step=step)
