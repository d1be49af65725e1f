"""MT30's dm_control tasks as Gymnasium envs, registered as ``pwm_agent/<task>``.

Each env is built the way TD-MPC2 builds its dm_control tasks: observations are the
task's observation dict flattened in order (float32), actions live in ``[-1, 1]``
(rescaled to the task's action bounds), every action is repeated 2 physics control
steps (rewards summed), and episodes are truncated after 500 agent steps (no
termination). ``gymnasium.make("pwm_agent/walker-run")`` works after
``import pwm_agent``; building one needs the ``dmc`` extra.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pwm_agent.envs.task_sets import MT30

__all__ = ["ACTION_REPEAT", "DMControlTaskEnv", "register_mt30"]

ACTION_REPEAT = 2
NAMESPACE = "pwm_agent"


class DMControlTaskEnv(gym.Env):
    """One dm_control task of MT30 (see the module docstring for the conventions).

    :param task: an MT30 dm_control task name, e.g. ``"walker-run"`` or ``"cup-spin"``.
    :param action_repeat: physics control steps per agent step.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, task: str, action_repeat: int = ACTION_REPEAT, render_mode: str | None = None) -> None:
        from pwm_agent.envs.dmc_tasks import make_dm_env

        self.task, self.action_repeat, self.render_mode = task, action_repeat, render_mode
        # dm_control draws initial states from this RandomState (the task keeps a reference):
        # reseeded in place from Gymnasium's np_random on the first and on every seeded reset.
        self._dm_random = np.random.RandomState(0)
        self._seeded = False
        self._env = make_dm_env(task, self._dm_random)
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        obs_dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, spec.shape, np.float32)

    @staticmethod
    def _flat(observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1) for v in observation.values()])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self._dm_random.seed(int(self.np_random.integers(2**31 - 1)))
            self._seeded = True
        return self._flat(self._env.reset().observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        reward = 0.0
        for _ in range(self.action_repeat):
            step = self._env.step(scaled)
            reward += float(step.reward or 0.0)
        return self._flat(step.observation), reward, False, False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._env.physics.render(height=240, width=320, camera_id=0)


def register_mt30() -> None:
    """Register every MT30 task as ``pwm_agent/<name>`` (idempotent; builds nothing)."""
    for spec in MT30:
        env_id = f"{NAMESPACE}/{spec.name}"
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point="pwm_agent.envs.dmc:DMControlTaskEnv",
                max_episode_steps=spec.episode_length,
                kwargs={"task": spec.name},
            )
