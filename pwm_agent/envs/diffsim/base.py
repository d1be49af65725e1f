"""Batched differentiable simulators in plain PyTorch with dflex's env interface.

The interface is the one PWM's DiffRL fork gives its dflex envs (so a user's
dflex env and these envs are interchangeable in :class:`~pwm_agent.shac.SHAC`):

- ``reset(env_ids=None, grads=False, force_reset=True)`` returns observations
  ``[N, O]``; with ``grads=True`` it only cuts the autograd graph behind the
  current state and returns the current observations (no reset);
- ``step(actions [N, A])`` clips actions to ``[-1, 1]`` and returns torch
  ``(obs [N, O], rew [N], done [N], extras)``. The reward is computed from the
  observation *before* the step and the action (``r_t = f(o_t, a_t)``); finished
  envs are reset inside ``step`` and ``extras`` holds ``obs_before_reset`` (the
  observation reached by this step, differentiable), ``termination``,
  ``truncation`` (episode step ``> episode_length - 1``) and ``primal`` (the
  task's main reward term).

Subclasses supply the physics (:meth:`DiffSimEnv.accelerations`), observations,
reward and start states; this class integrates with dflex's semi-implicit
Euler scheme (``sim_substeps`` substeps of ``dt / sim_substeps`` per control step).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium import spaces

__all__ = ["BatchedEnvInterface", "DiffSimEnv"]


class BatchedEnvInterface:
    """The members every built-in differentiable env shares (PyTorch and newton backends).

    Subclasses set ``num_obs``, ``num_actions``, ``no_grad`` and a ``torch.Generator``
    ``generator``, and implement ``_step``.
    """

    num_obs: int = 0
    num_actions: int = 0
    no_grad: bool = False
    generator: torch.Generator

    @property
    def num_acts(self) -> int:
        return self.num_actions

    @property
    def num_observations(self) -> int:
        return self.num_obs

    def seed(self, seed: int | None = None) -> None:
        """Seed the generator of start states (``None``: a random seed)."""
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Advance every env one control step: ``(obs [N, O], rew [N], done [N], extras)``
        (see the module docstring); no graph is recorded when ``no_grad``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.no_grad):
            return self._step(actions)

    def _step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        raise NotImplementedError


class DiffSimEnv(BatchedEnvInterface):
    """Base class of the built-in differentiable envs.

    :param num_envs: number of simulated envs ``N`` (one batch).
    :param device: torch device of the state and of every returned tensor.
    :param episode_length: control steps per episode (dflex: 240).
    :param stochastic_init: add dflex's start-state noise (``U(-pi/2, pi/2)`` on
        positions, ``U(-0.25, 0.25)`` on velocities) to ``start_state``.
    :param start_state: ``[positions..., velocities...]`` of every env at reset
        (default: the task's).
    :param no_grad: run ``step`` without recording gradients (dflex's flag; SHAC
        needs ``False``).
    :param seed: seed of the env's own random generator (start states).
    :param dtype: floating-point type of the state (``torch.float64`` for gradient checks).
    """

    #: generalised coordinates (joints) of one env.
    num_joints: int = 0
    #: observation size ``O``.
    num_obs: int = 0
    #: action size ``A``.
    num_actions: int = 0
    #: control step in seconds and integration substeps per control step (dflex's).
    dt: float = 1.0 / 60.0
    sim_substeps: int = 4
    #: actions in ``[-1, 1]`` are multiplied by this (forces in N or torques in N m).
    action_strength: float = 1000.0
    #: default ``start_state`` (positions then velocities).
    default_start_state: tuple[float, ...] = ()

    def __init__(
        self,
        num_envs: int = 64,
        device: torch.device | str = "cpu",
        episode_length: int = 240,
        stochastic_init: bool = True,
        start_state: Sequence[float] | None = None,
        no_grad: bool = False,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}.")
        start = self.default_start_state if start_state is None else tuple(float(v) for v in start_state)
        if len(start) != 2 * self.num_joints:
            raise ValueError(
                f"start_state needs {2 * self.num_joints} values ({self.num_joints} positions, then "
                f"{self.num_joints} velocities) for {type(self).__name__}, got {len(start)}."
            )
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dtype = dtype
        self.episode_length = self.max_episode_steps = int(episode_length)
        self.stochastic_init = stochastic_init
        self.no_grad = no_grad
        self.start_state = torch.tensor(start, dtype=dtype, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.num_obs,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.num_actions,), np.float32)
        self.progress_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.q, self.qd = self._start_states(self.num_envs)
        self.obs_buf = self.observation(self.q, self.qd)
        self.primal = torch.zeros(self.num_envs, dtype=dtype, device=self.device)

    # ---------------------------------------------------------------- physics
    def accelerations(self, q: torch.Tensor, qd: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """Joint accelerations ``[N, J]`` from positions and velocities ``[N, J]`` and
        the actuator forces ``[N, A]`` (actions times ``action_strength``)."""
        raise NotImplementedError

    def observation(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """Observations ``[N, O]`` of the state ``q, qd`` ``[N, J]``."""
        raise NotImplementedError

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Reward ``[N]`` of observation ``[N, O]`` and clipped action ``[N, A]``; sets ``self.primal``."""
        raise NotImplementedError

    def termination(self, obs: torch.Tensor) -> torch.Tensor:
        """Early-termination flags ``[N]`` (bool) of the observations ``[N, O]``; none by default."""
        return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)

    def integrate(self, q: torch.Tensor, qd: torch.Tensor, force: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One control step of semi-implicit Euler: ``qd += h qdd; q += h qd``, ``sim_substeps`` times."""
        h = self.dt / self.sim_substeps
        for _ in range(self.sim_substeps):
            qd = qd + h * self.accelerations(q, qd, force)
            q = q + h * qd
        return q, qd

    # ------------------------------------------------------------ interface
    def _step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        actions = torch.as_tensor(actions, device=self.device).to(self.dtype)
        actions = actions.reshape(self.num_envs, self.num_actions).clamp(-1.0, 1.0)
        rew = self.reward(self.obs_buf, actions)
        self.q, self.qd = self.integrate(self.q, self.qd, actions * self.action_strength)
        self.progress_buf = self.progress_buf + 1
        obs = self.observation(self.q, self.qd)
        termination = self.termination(obs)
        truncation = self.progress_buf > self.episode_length - 1
        extras = {
            "obs_before_reset": obs,
            "termination": termination,
            "truncation": truncation,
            "primal": self.primal,
        }
        done = termination | truncation
        # Reset finished envs without a host sync: fresh start states where done.
        q0, qd0 = self._start_states(self.num_envs)
        keep = ~done.unsqueeze(-1)
        self.q, self.qd = torch.where(keep, self.q, q0), torch.where(keep, self.qd, qd0)
        self.progress_buf = torch.where(done, torch.zeros_like(self.progress_buf), self.progress_buf)
        self.obs_buf = self.observation(self.q, self.qd)
        return self.obs_buf, rew, done, extras

    def reset(
        self, env_ids: torch.Tensor | Sequence[int] | None = None, grads: bool = False, force_reset: bool = True
    ) -> torch.Tensor:
        """Reset ``env_ids`` (indices or a bool mask ``[N]``; all by default) to start states,
        or with ``grads=True`` only detach the current state from the graph of earlier steps.
        Envs not reset keep their graph. Returns obs ``[N, O]``."""
        if grads:
            return self.initialize_trajectory()
        if env_ids is None:
            if not force_reset:
                return self.obs_buf
            env_ids = torch.arange(self.num_envs, device=self.device)
        ids = torch.as_tensor(env_ids, device=self.device)
        ids = ids.nonzero().reshape(-1) if ids.dtype == torch.bool else ids.to(torch.long).reshape(-1)
        q0, qd0 = self._start_states(len(ids))
        # Index assignment on copies: the other envs keep their autograd graph, as in dflex.
        self.q, self.qd = self.q.clone(), self.qd.clone()
        self.q[ids], self.qd[ids] = q0, qd0
        self.progress_buf = self.progress_buf.clone()
        self.progress_buf[ids] = 0
        self.obs_buf = self.observation(self.q, self.qd)
        return self.obs_buf

    def clear_grad(self) -> None:
        """Cut the autograd graph behind the current state (dflex's ``clear_grad``)."""
        self.q, self.qd = self.q.detach(), self.qd.detach()

    def initialize_trajectory(self) -> torch.Tensor:
        """Start a new differentiable trajectory from the current state: obs ``[N, O]``."""
        self.clear_grad()
        self.obs_buf = self.observation(self.q, self.qd)
        return self.obs_buf

    def get_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of joint positions and velocities ``[N, J]``."""
        return self.q.detach().clone(), self.qd.detach().clone()

    def set_state(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """Set joint positions and velocities ``[N, J]`` (may require grad); returns obs ``[N, O]``."""
        shape = (self.num_envs, self.num_joints)
        if tuple(q.shape) != shape or tuple(qd.shape) != shape:
            raise ValueError(f"set_state expects q and qd of shape {shape}, got {tuple(q.shape)} and {tuple(qd.shape)}.")
        self.q, self.qd = q.to(self.device, self.dtype), qd.to(self.device, self.dtype)
        self.obs_buf = self.observation(self.q, self.qd)
        return self.obs_buf

    def rand_act(self) -> torch.Tensor:
        """Uniform random actions ``[N, A]`` in ``[-1, 1]``."""
        u = torch.rand((self.num_envs, self.num_actions), generator=self.generator, device=self.device)
        return (2.0 * u - 1.0).to(self.dtype)

    def _start_states(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` start states ``(q [n, J], qd [n, J])``."""
        j = self.num_joints
        q = self.start_state[:j].expand(n, j).clone()
        qd = self.start_state[j:].expand(n, j).clone()
        if self.stochastic_init:
            u = torch.rand((n, 2 * j), generator=self.generator, device=self.device).to(self.dtype)
            q = q + np.pi * (u[:, :j] - 0.5)
            qd = qd + 0.5 * (u[:, j:] - 0.5)
        return q, qd

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, device={str(self.device)!r})"
