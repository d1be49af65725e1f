"""One PWM update: world model, then actor through imagination, then critics."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.nn.utils import clip_grad_norm_

from pwm_agent.buffers import WindowBatch
from pwm_agent.objectives import Imagination, discounted_return, imagine, td_lambda_targets
from pwm_agent.pwm.checks import check_compiler, check_speed_options
from pwm_agent.pwm.distributed import GradientSync
from pwm_agent.pwm.graphs import MemoryKey, StepGraph
from pwm_agent.pwm.policies import PWMPolicy
from pwm_agent.world_model import WorldModelLossWeights, world_model_loss

__all__ = ["UpdateConfig", "Updater"]

ADAM_BETAS = (0.7, 0.95)
REWARD_CLIP = 10.0


Grads = list[torch.Tensor | None]


def _set_grads(params: Iterable[torch.nn.Parameter], grads: Grads) -> None:
    """Point ``.grad`` at a step's gradients (a recorded step leaves them in its own
    graph memory, which another graph of the same step does not share)."""
    for param, grad in zip(params, grads):
        param.grad = grad


@contextmanager
def _frozen(*modules: torch.nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` need no gradient inside (restored after): a backward
    pass through what was built inside skips their weight gradients, compiled or not."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam with the fused kernel (one call for all tensors; CPU and CUDA)."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


@dataclass(frozen=True)
class UpdateConfig:
    """Hyperparameters of one update (see :class:`~pwm_agent.PWM` for their meaning)."""

    horizon: int = 16
    gamma: float = 0.99
    gae_lambda: float = 0.95
    model_iterations: int = 1
    critic_iterations: int = 2
    critic_minibatches: int = 4
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    termination_coef: float = 1.0
    rho: float = 0.99
    actor_max_grad_norm: float = 1.0
    critic_max_grad_norm: float = 100.0
    model_max_grad_norm: float = 20.0
    normalize_returns: bool = True
    symexp_rewards: bool = True
    bc_coef: float = 0.0
    use_bf16: bool = False
    cuda_graphs: bool = True
    compile_updates: bool = False


class Updater:
    """Owns the three optimisers and runs updates; metrics stay on the device
    until :meth:`pop_metrics` reads them (one host sync per logging period)."""

    def __init__(self, policy: PWMPolicy, config: UpdateConfig, learning_rate: float, model_lr: float) -> None:
        check_speed_options(config.use_bf16, config.compile_updates, policy.device.type)
        self.policy, self.config = policy, config
        self.actor_optimizer = _adam(policy.actor.parameters(), learning_rate, ADAM_BETAS)
        self.critic_optimizer = _adam(policy.critic.parameters(), learning_rate, ADAM_BETAS)
        self.model_optimizer = _adam(policy.world_model.parameters(), model_lr)
        self.loss_weights = WorldModelLossWeights(
            config.consistency_coef, config.reward_coef, config.termination_coef, config.rho
        )
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        # Set for data-parallel world-model training (see pwm_agent.pwm.distributed).
        self.sync: GradientSync | None = None
        # On a GPU each step's kernels are recorded once and replayed (see graphs.py).
        self.graphs: dict[str, StepGraph] = {}
        self._graph_anchor = -1
        self._memory = MemoryKey(policy)
        self._compiled: dict[str, Callable[..., Any]] = {}
        self._fresh_graphs()

    def _maybe_compiled(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, or with ``compile_updates`` on a CPU its ``torch.compile`` form (built on
        first use, kept per ``name``): the elementwise work between the matmuls (Mish,
        LayerNorm, SimNorm, losses and their backward passes) runs as a few fused loops."""
        if not (self.config.compile_updates and self.policy.device.type == "cpu"):
            return fn
        if name not in self._compiled:
            if not self._compiled:
                check_compiler()  # at the first update, not at load: predicting needs no compiler
            self._compiled[name] = torch.compile(fn, dynamic=False)
        return self._compiled[name]

    def _fresh_graphs(self) -> dict[str, StepGraph]:
        """The step graphs, recorded anew when the parameters moved to new memory
        (``policy.to(...)``: a graph replays against the memory it was recorded with)
        or a setting read while recording changed (config, loss weights, bound task)."""
        if self.graphs and not (self.config.cuda_graphs and self.policy.device.type == "cuda"):
            return self.graphs  # they run eagerly: nothing recorded can go stale
        anchor = hash((self._memory(), self.config, self.loss_weights, self.policy.world_model.bound_task))
        if anchor != self._graph_anchor:
            enabled = self.config.cuda_graphs
            self.graphs = {
                "world_model": StepGraph(self._world_model_step, "world-model", enabled),
                "actor": StepGraph(self._actor_step, "actor", enabled),
                "critic_targets": StepGraph(self._critic_targets_step, "critic-target", enabled),
                "critic": StepGraph(self._critic_step, "critic", enabled),
            }
            self._graph_anchor = anchor
        return self.graphs

    def _autocast(self) -> torch.autocast:
        device = next(self.policy.parameters()).device.type
        # Autocast's cast cache must not outlive a CUDA graph recording.
        cache = not (device == "cuda" and self.config.cuda_graphs)
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.config.use_bf16, cache_enabled=cache)

    def update(
        self, batch: WindowBatch, sample_batch: Callable[[], WindowBatch], model_steps: int | None = None
    ) -> None:
        """World-model step(s) on ``batch`` (more batches from ``sample_batch``;
        ``model_steps`` of them, default ``model_iterations``), then an actor step from
        ``batch.observations[0]``, then critic steps."""
        metrics: dict[str, torch.Tensor] = {}
        for i in range(self.config.model_iterations if model_steps is None else model_steps):
            metrics = dict(self.train_world_model(batch if i == 0 else sample_batch()))
        behavior = batch.actions[0] if self.config.bc_coef > 0 else None
        imagination, actor_metrics = self.train_actor(batch.observations[0], behavior)
        metrics.update(actor_metrics)
        if self.config.critic_iterations > 0:
            metrics.update(self.train_critic(imagination))
        self.accumulate(metrics)

    def accumulate(self, metrics: dict[str, torch.Tensor]) -> None:
        """Add one update's metrics to the running sums (kept on the device)."""
        for key, value in metrics.items():
            self._sums[key] = self._sums.get(key, 0.0) + value.detach().float()
        self._count += 1

    def reward_targets(
        self, rewards: torch.Tensor, update: bool = True, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scale ``rewards [H, B]`` for a scalar reward head (no shift); the statistics
        see only the steps where ``mask [H, B]`` (if given) is nonzero.

        The divisor is the running std of replayed rewards, floored at a tenth of
        their mean magnitude (constant rewards would make the std vanish), and the
        scaled targets are clipped to ``[-10, 10]``. With ``update=False`` the
        statistics and the model's scale are left as they are (for validation).
        """
        world_model = self.policy.world_model
        if world_model.config.reward_head != "scalar":
            return rewards
        if not update:
            return (rewards * world_model.reward_scale).clamp(-REWARD_CLIP, REWARD_CLIP)
        stats = self.policy.reward_rms
        if self.sync is not None:
            rewards_all = self.sync.gather(rewards)
            stats.update(rewards_all, None if mask is None else self.sync.gather(mask))
        else:
            stats.update(rewards, mask)
        divisor = torch.maximum(stats.std(0.0), 0.1 * stats.mean.abs()).clamp(min=1e-6)
        world_model.reward_scale.copy_(1.0 / divisor)
        return (rewards * world_model.reward_scale).clamp(-REWARD_CLIP, REWARD_CLIP)

    def world_model_loss(
        self, batch: WindowBatch, update_stats: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The world-model loss on windows ``[H + 1, B, ...]`` and its parts (``update_stats=False``
        leaves the reward statistics alone, for validation)."""
        world_model = self.policy.world_model
        rewards = self.reward_targets(batch.rewards, update=update_stats, mask=batch.mask)
        # A task-bound model pads and supplies its own task id; a multi-task one needs the batch's.
        tasks = batch.tasks if world_model.bound_task is None else None
        # Validation (no gradients, other batch sizes) stays eager: no compilation of its own.
        loss_fn = world_model_loss
        if torch.is_grad_enabled():
            loss_fn = self._maybe_compiled("world_model_loss", world_model_loss)
        return loss_fn(
            world_model, batch.observations, batch.actions, rewards, batch.terminated, tasks, self.loss_weights,
            batch.mask,
        )

    def world_model_backward(self, batch: WindowBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """World-model loss on windows ``[H + 1, B, ...]`` and its gradients in ``.grad``
        (averaged over ranks in data-parallel training); no optimiser step."""
        world_model = self.policy.world_model
        if self.sync is not None and world_model.task_emb is not None:
            # Lookups rescale only the rows they touch (max_norm), and ranks touch different
            # rows: rescale every row first so that all ranks keep identical weights.
            with torch.no_grad():
                emb = world_model.task_emb
                torch.embedding_renorm_(emb.weight, torch.arange(emb.num_embeddings, device=emb.weight.device),
                                        emb.max_norm, emb.norm_type)
        with self._autocast():
            loss, parts = self.world_model_loss(batch)
        self.model_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.sync is not None:
            self.sync.average_gradients(world_model.parameters())
        return loss, parts

    def train_world_model(self, batch: WindowBatch) -> dict[str, torch.Tensor]:
        """One world-model gradient step on windows ``[H + 1, B, ...]``. On a GPU the
        returned metrics are overwritten by the next call: read them first."""
        if self.sync is not None:  # collectives inside: never recorded
            metrics, grads = self._world_model_step(*batch)
        else:
            metrics, grads = self._fresh_graphs()["world_model"](*batch)
        _set_grads(self.policy.world_model.parameters(), grads)
        self.model_optimizer.step()
        return metrics

    def _world_model_step(self, *fields: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], Grads]:
        """Loss, gradients and clipping of one world-model step (``fields``: a
        :class:`WindowBatch`); returns the metrics and the gradients."""
        loss, parts = self.world_model_backward(WindowBatch(*fields))
        params = list(self.policy.world_model.parameters())
        grad_norm = clip_grad_norm_(params, self.config.model_max_grad_norm, foreach=True)
        metrics = {**{k: v.detach() for k, v in parts.items()}, "model_loss": loss.detach(),
                   "model_grad_norm": grad_norm}
        return metrics, [p.grad for p in params]

    def train_actor(
        self, obs: torch.Tensor, behavior_actions: torch.Tensor | None = None
    ) -> tuple[Imagination, dict[str, torch.Tensor]]:
        """One actor step through an imagined rollout from ``obs [B, O]``.

        With ``bc_coef > 0`` and ``behavior_actions [B, A]`` (the replayed actions taken
        in ``obs``), the loss adds ``bc_coef * mean((mean_action(z0) - a)^2)``: a pull
        towards the data's actions that keeps an offline policy where the model is right.
        Only the actor's gradient is computed (``torch.autograd.grad``): the world
        model and critics are read, never changed.
        """
        # The actor's sampling noise is drawn outside the recorded step: a graph then
        # holds no random-number state, and graphed and eager steps agree exactly.
        action_dim = self.policy.actor.action_mask.shape[0]
        noise = torch.randn(self.config.horizon, obs.shape[0], action_dim, device=obs.device)
        imagination, metrics, grads = self._fresh_graphs()["actor"](obs, behavior_actions, noise)
        actor = self.policy.actor
        _set_grads(actor.parameters(), grads)
        self.actor_optimizer.step()
        return imagination, {**metrics, "actor_std": actor.std().detach().mean()}

    def _actor_step(
        self, obs: torch.Tensor, behavior_actions: torch.Tensor | None, noise: torch.Tensor
    ) -> tuple[Imagination, dict[str, torch.Tensor], Grads]:
        """Imagined rollout from ``obs [B, O]`` with sampling noise ``[H, B, A]``, actor
        loss, gradients and clipping, return statistics: one actor step but its optimiser
        step. Returns the detached trajectory, the metrics and the gradients."""
        policy, cfg = self.policy, self.config
        with torch.no_grad():
            z0 = policy.world_model.encode(obs)
        with _frozen(policy.world_model, policy.critic):
            loss, returns, imagination = self._maybe_compiled("actor_objective", self._actor_objective)(z0, noise)
        metrics: dict[str, torch.Tensor] = {}
        if behavior_actions is not None and cfg.bc_coef > 0:
            with self._autocast():
                gap = policy.actor.mean_action(z0).float() - behavior_actions
            bc_loss = gap.square().sum(-1).mean()
            loss = loss + cfg.bc_coef * bc_loss
            metrics["bc_loss"] = bc_loss.detach()
        params = list(policy.actor.parameters())
        grads = list(torch.autograd.grad(loss, params))
        _set_grads(params, grads)
        grad_norm = clip_grad_norm_(params, cfg.actor_max_grad_norm, foreach=True)
        if cfg.normalize_returns:
            policy.return_rms.update(returns.detach())
        detached = Imagination(*(t.detach().float() for t in imagination))
        metrics.update(actor_loss=loss.detach(), actor_grad_norm=grad_norm, imagined_return=returns.detach().mean())
        return detached, metrics, grads

    def _actor_objective(
        self, z0: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, Imagination]:
        """Imagined rollout from ``z0 [B, L]`` with noise ``[H, B, A]``: the actor loss
        (minus the normalised H-step return), the returns ``[B]`` and the trajectory."""
        policy, cfg = self.policy, self.config
        with self._autocast():
            imagination = imagine(
                policy.world_model, policy.actor, z0, cfg.horizon, None, cfg.symexp_rewards, noise
            )
            bootstrap = policy.critic.min_value(imagination.latents[-1])
        # Sums and discounts in float32 (under bf16 autocast the heads return bf16).
        returns = discounted_return(
            imagination.rewards.float(), imagination.continues.float(), bootstrap.float(), cfg.gamma
        )
        scale = policy.return_rms.std() if cfg.normalize_returns else float(cfg.horizon)
        return -(returns / scale).mean(), returns, imagination

    def train_critic(self, imagination: Imagination) -> dict[str, torch.Tensor]:
        """``critic_iterations x critic_minibatches`` steps on TD(lambda) targets of the
        detached trajectory (``[H + 1, B, L]`` latents)."""
        cfg, graphs = self.config, self._fresh_graphs()
        inputs, targets, value = graphs["critic_targets"](*imagination)
        n = inputs.shape[0]
        size = n // cfg.critic_minibatches
        loss_sum, grad_norm = torch.zeros((), device=inputs.device), torch.zeros((), device=inputs.device)
        for _ in range(cfg.critic_iterations):
            order = torch.randperm(n, device=inputs.device)
            for j in range(cfg.critic_minibatches):
                idx = order[j * size : (j + 1) * size]
                loss, grad_norm, grads = graphs["critic"](inputs[idx], targets[idx])
                _set_grads(self.policy.critic.parameters(), grads)
                self.critic_optimizer.step()
                loss_sum = loss_sum + loss
        steps = max(cfg.critic_iterations * cfg.critic_minibatches, 1)
        return {"critic_loss": loss_sum / steps, "critic_grad_norm": grad_norm.clone(), "value": value.clone()}

    def _critic_targets_step(self, *imagination: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_critic_targets`, compiled with ``compile_updates`` on a CPU."""
        return self._maybe_compiled("critic_targets", self._critic_targets)(*imagination)

    def _critic_targets(
        self, latents: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, continues: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """TD(lambda) targets of a detached trajectory: critic inputs ``[H * B, L]``,
        targets ``[H * B]`` and the mean value (``actions`` is unused)."""
        cfg = self.config
        with torch.no_grad(), self._autocast():
            values = self.policy.critic.min_value(latents).float()  # [H + 1, B]
        targets = td_lambda_targets(rewards, continues, values, cfg.gamma, cfg.gae_lambda)
        return latents[:-1].reshape(-1, latents.shape[-1]), targets.reshape(-1), values.mean()

    def _critic_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Grads]:
        """Loss, gradients and clipping of one critic minibatch (``inputs [N, L]``,
        ``targets [N]``): one critic step but its optimiser step. Returns the loss, the
        gradient norm and the gradients."""
        loss = self._maybe_compiled("critic_loss", self._critic_loss)(inputs, targets)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = list(self.policy.critic.parameters())
        grad_norm = clip_grad_norm_(params, self.config.critic_max_grad_norm, foreach=True)
        return loss.detach(), grad_norm, [p.grad for p in params]

    def _critic_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error of every member on ``inputs [N, L]``, ``targets [N]``."""
        with self._autocast():
            pred = self.policy.critic(inputs).float()  # [K, N]
        return ((pred - targets) ** 2).mean()

    def pop_metrics(self) -> dict[str, float]:
        """Means of the metrics since the last call (reads them back to the host)."""
        out = {key: float(value / max(self._count, 1)) for key, value in self._sums.items()}
        self._sums, self._count = {}, 0
        return out
