"""PWM policy: world model + actor + critic ensemble, with SB3's ``BasePolicy`` interface."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import get_device

from pwm_agent.common.atomic import atomic_torch_save
from pwm_agent.common.running_stats import TorchRunningMeanStd
from pwm_agent.common.spaces_json import space_from_dict, space_to_dict
from pwm_agent.envs.wrappers import flatten_observation
from pwm_agent.pwm.fast_inference import NumpyActor, make_numpy_actor
from pwm_agent.pwm.graphs import MemoryKey, StepGraph
from pwm_agent.networks import Actor, CriticEnsemble
from pwm_agent.planning import MPPIPlanner
from pwm_agent.world_model import WorldModel, make_config

__all__ = ["PWMPolicy", "MlpPolicy", "MultiInputPolicy"]

# Up to this many observations, CPU acting runs through NumPy (lower latency).
NUMPY_MAX_BATCH = 16


class PWMPolicy(BasePolicy):
    """The networks of a PWM agent.

    Acting needs only the encoder and the actor: ``a = tanh(mu(encode(obs)))``
    (deterministic) or a Gaussian sample before the squash. Actions live in
    ``[-1, 1]`` and are rescaled to the action space's bounds as SB3 does.

    :param observation_space: a flat ``Box`` observation space.
    :param action_space: a ``Box`` action space with finite bounds.
    :param lr_schedule: unused (the algorithm owns the optimisers); kept for SB3.
    :param world_model: a preset name of :data:`pwm_agent.world_model.PRESETS`, a
        config dict or :class:`~pwm_agent.world_model.WorldModelConfig`.
    :param world_model_kwargs: overrides applied to that preset.
    :param actor_arch: hidden widths of the actor (the paper: ``[400, 200, 100]``).
    :param critic_arch: hidden widths of each critic (the paper: ``[400, 200]``).
    :param n_critics: critic ensemble size.
    :param activation: activation of actor and critics (default: the world model's).
    :param log_std_init: initial actor log-std.
    :param log_std_min: lower clamp of the actor log-std.
    :param dict_observation_space: the original ``Dict`` space when observations
        are flattened (``MultiInputPolicy``); ``predict`` then accepts dicts.
    :param task_id: for a multi-task world model (``num_tasks > 0`` in its config), the
        task this policy acts in; observations and actions of the task's own dims are
        zero-padded to ``model_obs_dim`` / ``model_action_dim`` inside the world model.
    :param model_obs_dim: the world model's (padded) observation size (default: the env's).
    :param model_action_dim: the world model's (padded) action size (default: the env's).
    :param action_dims: each task's own action size (the world model's action masks).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule | None = None,
        world_model: str | dict[str, Any] = "small",
        world_model_kwargs: dict[str, Any] | None = None,
        actor_arch: list[int] | None = None,
        critic_arch: list[int] | None = None,
        n_critics: int = 3,
        activation: str | None = None,
        log_std_init: float = -1.0,
        log_std_min: float = -1.427,
        dict_observation_space: spaces.Dict | None = None,
        task_id: int | None = None,
        model_obs_dim: int | None = None,
        model_action_dim: int | None = None,
        action_dims: list[int] | None = None,
    ) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(
                f"PWMPolicy needs a flat Box observation space, got {observation_space}. "
                "Use 'MultiInputPolicy' for Dict spaces, or flatten the observations."
            )
        self.dict_observation_space = dict_observation_space
        self.wm_config = make_config(world_model, **(world_model_kwargs or {}))
        obs_dim, act_dim = int(observation_space.shape[0]), int(action_space.shape[0])
        model_obs, model_act = model_obs_dim or obs_dim, model_action_dim or act_dim
        if model_obs < obs_dim or model_act < act_dim:
            raise ValueError(
                f"The env's obs/action dims ({obs_dim}, {act_dim}) exceed the world model's ({model_obs}, "
                f"{model_act}); a task must fit the model's padded dims."
            )
        self.world_model = WorldModel(model_obs, model_act, self.wm_config, action_dims)
        if task_id is not None:
            self.world_model.bind_task(task_id)
        latent = self.wm_config.latent_dim
        activation = activation or self.wm_config.activation
        self.actor = Actor(latent, act_dim, list(actor_arch or [128, 128]), activation, log_std_init, log_std_min)
        self.critic = CriticEnsemble(latent, list(critic_arch or [128, 128]), n_critics, activation)
        # Training statistics, saved with the policy: replayed rewards and imagined returns.
        self.reward_rms = TorchRunningMeanStd()
        self.return_rms = TorchRunningMeanStd()
        self._fast_actor: NumpyActor | None = None
        # GPU acting: the encoder and actor replayed as CUDA graphs (see _act_graph).
        self._act_graphs: dict[bool, StepGraph] = {}
        self._act_graph_anchor = 0
        self._act_memory: MemoryKey | None = None
        self.cuda_graphs = True  # PWM sets its own cuda_graphs option here
        self._kwargs = dict(
            world_model=self.wm_config.to_dict(),
            actor_arch=list(actor_arch or [128, 128]),
            critic_arch=list(critic_arch or [128, 128]),
            n_critics=n_critics,
            activation=activation,
            log_std_init=log_std_init,
            log_std_min=log_std_min,
        )
        if task_id is not None or model_obs_dim or model_action_dim or action_dims:
            self._kwargs.update(task_id=task_id, model_obs_dim=model_obs, model_action_dim=model_act,
                                action_dims=list(action_dims) if action_dims is not None else None)

    def constructor_kwargs(self) -> dict[str, Any]:
        """The network options as plain JSON-friendly values (rebuilds this policy)."""
        return dict(self._kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            observation_space=self.observation_space,
            action_space=self.action_space,
            dict_observation_space=self.dict_observation_space,
            **self._kwargs,
        )

    def save(self, path: str) -> None:
        """Save the networks alone: weights plus a JSON description (no pickled objects)."""
        config = {
            "observation_space": space_to_dict(self.observation_space),
            "action_space": space_to_dict(self.action_space),
            "dict_observation_space": (
                space_to_dict(self.dict_observation_space) if self.dict_observation_space is not None else None
            ),
            "kwargs": self._kwargs,
        }
        atomic_torch_save({"state_dict": self.state_dict(), "config": json.dumps(config)}, path)

    @classmethod
    def load(cls, path: str, device: torch.device | str = "auto") -> "PWMPolicy":  # type: ignore[override]
        """Load a policy written by :meth:`save`; only tensors and JSON are read."""
        device = get_device(device)
        try:
            data = torch.load(path, map_location=device, weights_only=True)
            config = json.loads(data["config"])
        except FileNotFoundError:
            raise
        except (RuntimeError, OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as err:
            raise ValueError(
                f"{path} is not a readable policy file of PWMPolicy.save (corrupt or truncated, or another "
                f"kind of file): {err}"
            ) from err
        dict_space = config["dict_observation_space"]
        policy = cls(
            space_from_dict(config["observation_space"]),
            space_from_dict(config["action_space"]),  # type: ignore[arg-type]
            dict_observation_space=space_from_dict(dict_space) if dict_space else None,  # type: ignore[arg-type]
            **config["kwargs"],
        )
        policy.load_state_dict(data["state_dict"])
        return policy.to(device)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_fast_actor"] = None  # holds views of this object's parameter memory
        state["_act_graphs"], state["_act_memory"] = {}, None  # tied to this object's parameter memory
        return state

    def _numpy_actor(self) -> NumpyActor | None:
        if self._fast_actor is None or not self._fast_actor.is_current():
            self._fast_actor = make_numpy_actor(self.world_model, self.actor)
        return self._fast_actor

    def _act_graph(self, deterministic: bool) -> StepGraph:
        """The acting step ``obs [N, O]`` (+ ``noise [N, A]``) -> actions, recorded as a CUDA
        graph on a GPU (one launch instead of one per layer); re-recorded if the
        parameters move to new memory."""
        if self._act_memory is None:
            self._act_memory = MemoryKey(self.world_model, self.actor)
        anchor = self._act_memory()
        if anchor != self._act_graph_anchor:
            self._act_graphs, self._act_graph_anchor = {}, anchor
        if deterministic not in self._act_graphs:
            self._act_graphs[deterministic] = StepGraph(self._act, "predict", self.cuda_graphs, max_graphs=4)
        return self._act_graphs[deterministic]

    def _act(self, obs: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Actions in ``[-1, 1]`` ``[N, A]``: the mean action, or a sample driven by ``noise [N, A]``."""
        z = self.world_model.encode(obs)
        return self.actor.mean_action(z) if noise is None else self.actor.sample(z, noise)

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in ``[-1, 1]``: ``obs [B, O]`` -> ``[B, A]``."""
        return self._predict(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        z = self.world_model.encode(observation)  # type: ignore[arg-type]
        return self.actor(z, deterministic=deterministic)

    def observation_batch(self, observation: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """``observation`` as float32 ``[O]`` or ``[N, O]`` (dicts flattened), shape-checked."""
        if isinstance(observation, dict):
            if self.dict_observation_space is None:
                raise ValueError("This policy takes Box observations, but a dict was given.")
            # one observation unless some entry has a leading batch dim (a bare float fills a (1,) entry)
            single = all(
                np.ndim(observation.get(key)) <= len(sub.shape)
                for key, sub in self.dict_observation_space.spaces.items()
            )
            observation = flatten_observation(self.dict_observation_space, observation, batched=not single)
        obs = np.asarray(observation, dtype=np.float32)
        obs_dim = self.observation_space.shape[0]  # type: ignore[index]
        if obs.shape[-1:] != (obs_dim,) or obs.ndim > 2:
            raise ValueError(f"Expected an observation of shape ({obs_dim},) or (N, {obs_dim}), got {obs.shape}.")
        return obs

    def plan(self, observation: np.ndarray | dict[str, np.ndarray], planner: MPPIPlanner,
             deterministic: bool = True) -> np.ndarray:
        """Actions in the env's bounds chosen by MPPI planning (``[A]`` or ``[N, A]``)."""
        obs = self.observation_batch(observation)
        if self.training:
            self.set_training_mode(False)
        batch = torch.from_numpy(np.atleast_2d(obs)).to(self.device)
        actions = planner.plan(batch, deterministic).cpu().numpy()
        actions = self.unscale_action(actions[0] if obs.ndim == 1 else actions)
        return actions  # type: ignore[return-value]

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions in the env's bounds for one observation ``[O]`` or a batch ``[N, O]``.

        A lean path for low latency: on the CPU, small batches run through
        :class:`~pwm_agent.pwm.fast_inference.NumpyActor` (same layers, NumPy
        views of the live weights); on a GPU the encoder and actor replay as one
        CUDA graph; otherwise one tensor copy and no autograd.
        """
        obs = self.observation_batch(observation)
        fast = self._numpy_actor() if obs.ndim == 1 or obs.shape[0] <= NUMPY_MAX_BATCH else None
        if fast is not None:
            actions = fast(obs, deterministic)
        else:
            if self.training:
                self.set_training_mode(False)
            with torch.inference_mode():
                batch = torch.from_numpy(np.atleast_2d(obs)).to(self.device)
                if self.device.type == "cuda":
                    action_dim = self.actor.action_mask.shape[0]
                    noise = None if deterministic else torch.randn(batch.shape[0], action_dim, device=self.device)
                    out = self._act_graph(deterministic)(batch, noise)
                else:
                    out = self._predict(batch, deterministic)
                actions = out.cpu().numpy()
                actions = actions[0] if obs.ndim == 1 else actions
        actions = self.unscale_action(actions)  # type: ignore[assignment]
        return actions, state


MlpPolicy = PWMPolicy
"""Policy for flat ``Box`` observations."""


class MultiInputPolicy(PWMPolicy):
    """Policy for ``Dict`` observations of ``Box`` entries, flattened into one vector."""
