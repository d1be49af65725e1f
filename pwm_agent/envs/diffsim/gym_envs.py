"""The differentiable tasks as Gymnasium envs (NumPy, no gradients).

``gymnasium.make("pwm_agent/CartPoleSwingUp-v0")`` gives one env and
``gymnasium.make_vec("pwm_agent/CartPoleSwingUp-v0", num_envs=64)`` one batched
simulator behind the ``gymnasium.vector`` API, so PWM, SAC and PPO train on
exactly the dynamics SHAC differentiates through.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from pwm_agent.envs.diffsim.base import DiffSimEnv
from pwm_agent.envs.diffsim.registry import make_diffsim

__all__ = ["DiffSimGymEnv", "DiffSimVectorEnv"]


def _refuse(kwargs: dict[str, Any], names: tuple[str, ...], why: str) -> None:
    given = [name for name in names if name in kwargs]
    if given:
        raise TypeError(f"Do not pass {given} here: {why}. Use the differentiable env class for other settings.")


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


class DiffSimVectorEnv(VectorEnv):
    """A batched differentiable env (built-in or a user's dflex env) as a ``gymnasium.vector`` env.

    Autoreset mode ``SAME_STEP``: a finished sub-env is reset within ``step`` and its
    last observation is in ``info["final_obs"]`` (masked by ``info["_final_obs"]``).

    :param task: a task name (``"CartPoleSwingUp"``, ``"DoublePendulum"``) or ``None``
        when ``env`` is given.
    :param num_envs: batch size ``N`` for a named task.
    :param env: an existing differentiable env to wrap (its own ``num_envs`` is used).
    :param kwargs: constructor arguments of the named task (``device``, ``episode_length``, ...).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    render_mode = None

    def __init__(self, task: str | None = None, num_envs: int = 1, env: Any = None, **kwargs: Any) -> None:
        kwargs.pop("max_episode_steps", None)  # registration detail; episodes end inside the simulator
        if env is None:
            if task is None:
                raise ValueError("Pass a task name (e.g. 'CartPoleSwingUp') or env=<a differentiable env>.")
            _refuse(kwargs, ("no_grad",), "the Gymnasium view never records gradients")
            env = make_diffsim(task, num_envs=num_envs, no_grad=True, **kwargs)
        self.diff_env = env
        self.num_envs = int(env.num_envs)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (int(env.num_obs),), np.float32)
        n_act = int(getattr(env, "num_actions", getattr(env, "num_acts", 0)))
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (n_act,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.device = torch.device(getattr(env, "device", "cpu"))

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None and callable(getattr(self.diff_env, "seed", None)):  # dflex stores an int there
            self.diff_env.seed(seed)
        mask = (options or {}).get("reset_mask")
        with torch.no_grad():
            if mask is None:
                obs = self.diff_env.reset()
            else:
                ids = torch.as_tensor(np.flatnonzero(mask), device=self.device)
                obs = self.diff_env.reset(ids)
        return _numpy(obs), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        with torch.no_grad():
            act = torch.as_tensor(np.asarray(actions, dtype=np.float32), device=self.device)
            obs, rew, done, extras = self.diff_env.step(act)
        terminated = _numpy(extras["termination"]).astype(bool)
        truncated = _numpy(extras["truncation"]).astype(bool) & ~terminated
        info: dict[str, Any] = {}
        done_np = _numpy(done).astype(bool)
        if done_np.any():
            final = _numpy(extras["obs_before_reset"])
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in range(self.num_envs):
                final_obs[i] = final[i] if done_np[i] else None
            info = {"final_obs": final_obs, "_final_obs": done_np, "final_info": {}, "_final_info": done_np}
        return _numpy(obs), _numpy(rew).astype(np.float64), terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        pass


class DiffSimGymEnv(gym.Env):
    """One differentiable-task env behind the plain ``gymnasium.Env`` API (NumPy, no gradients).

    :param task: task name, e.g. ``"CartPoleSwingUp"``.
    :param kwargs: constructor arguments of the task (``episode_length``, ``stochastic_init``, ...).
    """

    metadata = {"render_modes": []}

    def __init__(self, task: str = "CartPoleSwingUp", **kwargs: Any) -> None:
        kwargs.pop("max_episode_steps", None)
        _refuse(kwargs, ("num_envs", "no_grad"), "a single Gymnasium env simulates one env without gradients")
        self.diff_env: DiffSimEnv = make_diffsim(task, num_envs=1, no_grad=True, **kwargs)
        self.observation_space = self.diff_env.observation_space
        self.action_space = self.diff_env.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.diff_env.seed(seed)
        with torch.no_grad():
            return _numpy(self.diff_env.reset())[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        with torch.no_grad():
            act = torch.as_tensor(np.asarray(action, dtype=np.float32), device=self.diff_env.device)
            _, rew, _, extras = self.diff_env.step(act.reshape(1, -1))
        terminated = bool(extras["termination"][0])
        truncated = bool(extras["truncation"][0]) and not terminated
        return _numpy(extras["obs_before_reset"])[0], float(rew[0]), terminated, truncated, {}
