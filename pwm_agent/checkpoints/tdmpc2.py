"""Load TD-MPC2 / PWM multi-task checkpoints (legacy and current key layouts).

Every size is read from the tensors (nothing about the architecture is assumed
beyond TD-MPC2's layer layout); tensors are loaded with ``weights_only=True``.
Layouts (see the fixtures' README):

- *legacy* (TD-MPC2 up to early 2024, PWM's released models): ``_Qs.params.N``
  stacked Q tensors, no buffers;
- *current*: ``_action_masks``, ``log_std_min``/``log_std_dif`` buffers and nested
  ``_Qs.params.<layer>.<field>`` keys (plus ``_detach_Qs_params`` and
  ``_target_Qs_params`` copies).

Keys of a ``torch.compile``d model (``_orig_mod.``) are accepted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from pwm_agent.common.atomic import atomic_torch_save
from pwm_agent.checkpoints.heads import PolicyPrior, QEnsemble
from pwm_agent.envs.task_sets import TASK_SETS, TaskSpec
from pwm_agent.world_model import WorldModel, WorldModelConfig

__all__ = ["CheckpointError", "TDMPC2Checkpoint", "load_checkpoint", "load_world_model", "save_world_model"]

# Extra entry of files written by save_world_model: what TD-MPC2's format does not store.
META_KEY = "pwm_agent"

_FIELDS = ("weight", "bias", "ln.weight", "ln.bias")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as a TD-MPC2 world model; the message says why."""


@dataclass
class TDMPC2Checkpoint:
    """What a TD-MPC2 checkpoint holds, rebuilt as modules.

    ``world_model`` (encoder, dynamics, reward, task embedding, action masks),
    ``policy_prior`` and ``q`` / ``target_q`` (``None`` when the file lacks them),
    the ``layout`` read, and the task set (``tasks``: names and dims, when the
    number of tasks identifies MT30 or MT80).
    """

    world_model: WorldModel
    policy_prior: PolicyPrior | None
    q: QEnsemble | None
    target_q: QEnsemble | None
    layout: str
    tasks: tuple[TaskSpec, ...] | None
    ignored_keys: list[str] = field(default_factory=list)

    def task_embedding(self, task: torch.Tensor) -> torch.Tensor:
        """Rows ``[B, T]`` of the task embedding (with its in-place max-norm renorm)."""
        assert self.world_model.task_emb is not None
        return self.world_model.task_emb(task.long())


def _read_state_dict(
    path: str | os.PathLike[str], map_location: str | torch.device
) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated zip, foreign pickle, ...
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:300]}). It is truncated, corrupt, "
            "or holds objects other than tensors (only weights are loaded, never code)."
        ) from err
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict or {{'model': state_dict}}, got {type(raw).__name__}.")
    meta = raw.get(META_KEY, {}) if isinstance(raw, dict) else {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the `{META_KEY}` entry must be a dict of plain values, got "
                              f"{type(meta).__name__}; the file is damaged.")
    model_keys = ("_task_emb", "_encoder", "_dynamics", "_reward", "_termination", "_pi", "_action_masks")
    bad = sorted(k for k, v in state.items() if k.startswith(model_keys) and not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{path}: entries {bad[:5]} of the state dict are not tensors; the file is damaged.")
    return {key.replace("_orig_mod.", ""): value for key, value in state.items()}, meta


def detect_layout(state: dict[str, Any]) -> str:
    """``"legacy"`` or ``"current"`` from the key names (see the module docstring)."""
    legacy = isinstance(state.get("_Qs.params.0"), torch.Tensor) and state["_Qs.params.0"].dim() == 3
    current = "_Qs.params.0.weight" in state or "_detach_Qs_params.0.weight" in state or "_action_masks" in state
    if legacy == current:
        return "legacy" if legacy else "world-model-only"
    return "legacy" if legacy else "current"


def _layers(state: dict[str, Any], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted(int(m.group(1)) for key in state if (m := pattern.match(key)))


def _mlp_shape(state: dict[str, Any], prefix: str) -> tuple[int, list[int], int]:
    """(in_dim, hidden widths, out_dim) of the MLP under ``prefix``."""
    idx = _layers(state, prefix)
    if not idx:
        raise CheckpointError(f"No `{prefix}<k>.weight` keys: this is not a TD-MPC2 world model.")
    layers = range(max(idx) + 1)
    wanted = [f"{prefix}{k}.{f}" for k in layers for f in _FIELDS if k < max(idx) or f in ("weight", "bias")]
    missing = [key for key in wanted if key not in state]
    if missing:
        raise CheckpointError(f"Missing: {missing}.")
    weights = [state[f"{prefix}{k}.weight"] for k in idx]
    return int(weights[0].shape[1]), [int(w.shape[0]) for w in weights[:-1]], int(weights[-1].shape[0])


def _encoder_prefix(state: dict[str, Any]) -> str:
    for prefix in ("_encoder.state.", "_encoder."):
        if f"{prefix}0.weight" in state:
            return prefix
    raise CheckpointError("No encoder weights (`_encoder.state.0.weight`): only state-observation models load.")


def _task_masks(
    state: dict[str, Any], num_tasks: int, action_dim: int, meta: dict[str, Any]
) -> tuple[torch.Tensor | None, Any]:
    """Action masks ``[num_tasks, A]`` (from the file, else from the task table) and the task table
    (the file's own, else MT30/MT80 by the number of tasks)."""
    if meta.get("tasks"):
        try:
            tasks = tuple(TaskSpec(**spec) for spec in meta["tasks"])
        except TypeError as err:
            raise CheckpointError(f"The file's task table is malformed ({err}).") from err
        if len(tasks) != num_tasks:
            raise CheckpointError(f"The file's task table lists {len(tasks)} tasks for {num_tasks} embedding rows.")
    else:
        tasks = {30: TASK_SETS["mt30"], 80: TASK_SETS["mt80"]}.get(num_tasks)
    if "_action_masks" in state:
        masks = state["_action_masks"]
        if tuple(masks.shape) != (num_tasks, action_dim):
            raise CheckpointError(f"`_action_masks` has shape {tuple(masks.shape)}, expected ({num_tasks}, {action_dim}).")
        return masks.float(), tasks
    if tasks is not None:
        masks = torch.zeros(num_tasks, action_dim)
        for i, spec in enumerate(tasks):
            masks[i, : spec.action_dim] = 1.0
        return masks, tasks
    return None, None


def _build(
    state: dict[str, Any], simnorm_dim: int, vmin: float, vmax: float, meta: dict[str, Any]
) -> tuple[WorldModel, dict[str, Any]]:
    """The world model whose shapes the state dict implies, and the facts read."""
    enc = _encoder_prefix(state)
    emb = state.get("_task_emb.weight")
    num_tasks, task_dim = (int(emb.shape[0]), int(emb.shape[1])) if emb is not None else (0, 0)
    enc_in, enc_hidden, latent = _mlp_shape(state, enc)
    dyn_in, dyn_hidden, _ = _mlp_shape(state, "_dynamics.")
    rew_in, rew_hidden, num_bins = _mlp_shape(state, "_reward.")
    if dyn_hidden != rew_hidden:
        raise CheckpointError(f"Dynamics widths {dyn_hidden} differ from reward widths {rew_hidden}; unsupported.")
    obs_dim, action_dim = enc_in - task_dim, dyn_in - latent - task_dim
    masks, tasks = _task_masks(state, num_tasks, action_dim, meta)
    config = WorldModelConfig(
        latent_dim=latent, enc_dims=tuple(enc_hidden), mlp_dims=tuple(dyn_hidden), simnorm_dim=simnorm_dim,
        reward_head="twohot", num_bins=num_bins, vmin=vmin, vmax=vmax,
        termination_head="_termination.0.weight" in state,
        num_tasks=num_tasks, task_dim=task_dim, activation=meta.get("activation", "mish"),
    )
    model = WorldModel(obs_dim, action_dim, config)
    if masks is not None:
        model.action_masks.copy_(masks)
    return model, {"encoder": enc, "masks": masks, "tasks": tasks, "num_bins": num_bins}


def _world_model_keys(state: dict[str, Any], enc: str) -> dict[str, torch.Tensor]:
    renames = (
        ("_task_emb.", "task_emb."), (enc, "encoder."), ("_dynamics.", "dynamics."), ("_reward.", "reward_net."),
        ("_termination.", "termination_net."),
    )
    out = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old):
                out[new + key[len(old):]] = value
    return out


def _q_tensors(state: dict[str, Any], prefix: str, layout: str) -> list[torch.Tensor] | None:
    """The 10 stacked Q tensors (layer-major, fields weight/bias/ln.weight/ln.bias) or ``None``."""
    if layout == "legacy":
        keys = [f"{prefix}.{n}" for n in range(10)]
    else:
        keys = [f"{prefix}.{k}.{f}" for k in range(3) for f in _FIELDS][:10]
    if not all(k in state for k in keys):
        return None
    return [state[k] for k in keys]


def _q_module(tensors: list[torch.Tensor], num_bins: int, vmin: float, vmax: float) -> QEnsemble:
    num_q, hidden, in_dim = tensors[0].shape
    q = QEnsemble(int(num_q), int(in_dim), int(hidden), num_bins, vmin=vmin, vmax=vmax)
    expected = [p.shape for k in range(3) for p in (q.weights[k], q.biases[k], *(
        (q.ln_weights[k], q.ln_biases[k]) if k < 2 else ()))]
    found = [t.shape for t in tensors]
    if found != expected:
        raise CheckpointError(f"The Q ensemble's tensors have shapes {found}; their first implies {expected}.")
    with torch.no_grad():
        for k in range(3):
            q.weights[k].copy_(tensors[4 * k])
            q.biases[k].copy_(tensors[4 * k + 1])
            if k < 2:
                q.ln_weights[k].copy_(tensors[4 * k + 2])
                q.ln_biases[k].copy_(tensors[4 * k + 3])
    return q


def _expected_keys(model: WorldModel) -> set[str]:
    return {k for k in model.state_dict() if k not in ("action_masks", "reward_scale")}


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    simnorm_dim: int = 8,
    vmin: float = -10.0,
    vmax: float = 10.0,
    log_std_bounds: tuple[float, float] = (-10.0, 2.0),
) -> TDMPC2Checkpoint:
    """Read a TD-MPC2 (or PWM) checkpoint: world model, policy prior and Q heads.

    :param map_location: where tensors go (released files hold CUDA tensors: the
        default ``"cpu"`` reads them anywhere).
    :param simnorm_dim: SimNorm group size (not stored by TD-MPC2's files; 8).
    :param vmin: lower end of the two-hot bins (not stored; -10).
    :param vmax: upper end of the two-hot bins (not stored; 10).
    :param log_std_bounds: the policy prior's log-std range (not stored; TD-MPC2 uses
        ``(-10, 2)``, the PWM fork ``(-5, 0.5)``).
    """
    state, meta = _read_state_dict(path, map_location)
    layout = detect_layout(state)
    simnorm_dim = int(meta.get("simnorm_dim", simnorm_dim))
    vmin, vmax = float(meta.get("vmin", vmin)), float(meta.get("vmax", vmax))
    try:
        model, facts = _build(state, simnorm_dim, vmin, vmax, meta)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: does not match the {layout} TD-MPC2 layout. {err}") from err
    wm_state = _world_model_keys(state, facts["encoder"])
    expected = _expected_keys(model)
    missing, unexpected = sorted(expected - set(wm_state)), sorted(set(wm_state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the world-model keys do not match the {layout} TD-MPC2 layout. Missing: {missing}; "
            f"unexpected: {unexpected}."
        )
    for key, value in wm_state.items():
        if value.shape != model.state_dict()[key].shape:
            raise CheckpointError(f"{path}: `{key}` has shape {tuple(value.shape)}, the layout implies "
                                  f"{tuple(model.state_dict()[key].shape)}.")
    for key, value in wm_state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: `{key}` holds NaN or inf values: the file is damaged (or its training "
                                  "diverged). Use another checkpoint.")
    model.load_state_dict({**model.state_dict(), **wm_state})
    model.to(map_location).eval()
    try:
        prior = _prior(state, model, facts, log_std_bounds)
    except (RuntimeError, CheckpointError) as err:
        raise CheckpointError(f"{path}: the policy prior (`_pi.*`) does not fit the world model: {err}") from err
    q_tensors = _q_tensors(state, "_Qs.params", layout)
    target_key = "_target_Qs.params" if layout == "legacy" else "_target_Qs_params"
    target_tensors = _q_tensors(state, target_key, layout)
    q = _q_module(q_tensors, facts["num_bins"], vmin, vmax).eval() if q_tensors else None
    target_q = _q_module(target_tensors, facts["num_bins"], vmin, vmax).eval() if target_tensors else None
    used = re.compile(
        r"^(_task_emb|_encoder|_dynamics|_reward|_pi|_Qs|_target_Qs|_detach_Qs|_action_masks|log_std_|_termination)"
    )
    ignored = sorted(k for k in state if not used.match(k))
    return TDMPC2Checkpoint(model, prior, q, target_q, layout, facts["tasks"], ignored)


def _prior(
    state: dict[str, Any], model: WorldModel, facts: dict[str, Any], bounds: tuple[float, float]
) -> PolicyPrior | None:
    if "_pi.0.weight" not in state:
        return None
    in_dim, hidden, out = _mlp_shape(state, "_pi.")
    prior = PolicyPrior(in_dim, hidden, out // 2, facts["masks"], bounds)
    pi_state = {"net." + k[len("_pi."):]: v for k, v in state.items() if k.startswith("_pi.")}
    prior.load_state_dict({**prior.state_dict(), **pi_state})
    return prior.to(next(model.parameters()).device).eval()


def load_world_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> WorldModel:
    """The world model of a TD-MPC2/PWM checkpoint (see :func:`load_checkpoint`), in eval mode.

    ``encode(obs, task)``, ``next(z, a, task)`` and ``reward(z, a, task)`` take the
    padded obs/action dims and ``task`` ids ``[B]`` (see ``action_masks`` for each task's
    own action dims).
    """
    return load_checkpoint(Path(path), map_location).world_model


def save_world_model(
    world_model: WorldModel,
    path: str | os.PathLike[str],
    tasks: Sequence[TaskSpec] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a multi-task world model as a TD-MPC2 checkpoint (current layout, world model only).

    The file loads with :func:`load_checkpoint` and :meth:`pwm_agent.PWM.from_pretrained`,
    and its ``model`` entry with TD-MPC2's own key names. What TD-MPC2's format does not
    store (task names and dims, SimNorm group, bins range, activation) goes in an extra
    ``"pwm_agent"`` entry of plain values. Written atomically.

    :param dtype: storage precision of the weights: ``torch.float16`` or ``torch.bfloat16``
        halve the file; loading always builds a float32 model (the weights are upcast).
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, not {dtype}.")
    config = world_model.config
    if config.reward_head != "twohot" or config.num_tasks == 0:
        raise ValueError("The TD-MPC2 layout holds multi-task models with a two-hot reward head.")
    if tasks is not None and len(tasks) != config.num_tasks:
        raise ValueError(f"{len(tasks)} task specs for a model of {config.num_tasks} tasks.")
    for i, spec in enumerate(tasks or []):
        used = int(world_model.action_masks[i].sum())
        if spec.obs_dim > world_model.obs_dim or spec.action_dim != used:
            raise ValueError(
                f"Task {spec.name!r} (obs {spec.obs_dim}, action {spec.action_dim}) does not fit the model's padded "
                f"obs {world_model.obs_dim} and its action mask of {used} dims for task {i}."
            )
    renames = (("task_emb.", "_task_emb."), ("encoder.", "_encoder.state."), ("dynamics.", "_dynamics."),
               ("reward_net.", "_reward."), ("termination_net.", "_termination."))
    state: dict[str, torch.Tensor] = {"_action_masks": world_model.action_masks.detach().cpu().clone()}
    for key, value in world_model.state_dict().items():
        for old, new in renames:
            if key.startswith(old):
                state[new + key[len(old):]] = value.detach().cpu().clone()
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    meta = {"simnorm_dim": config.simnorm_dim, "vmin": config.vmin, "vmax": config.vmax,
            "activation": config.activation, "tasks": [spec._asdict() for spec in tasks or []]}
    return atomic_torch_save({"model": state, META_KEY: meta}, path)
