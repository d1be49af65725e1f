"""MT80's 50 Meta-World tasks as Gymnasium envs, registered as ``pwm_agent/mw-<task>``.

Each env follows TD-MPC2's Meta-World conventions: the goal-observable version of
the task (39-dim float32 observations, 4-dim actions in ``[-1, 1]``), goals and
object positions drawn anew at every reset, every action repeated 2 simulator
steps (rewards summed), and episodes truncated after 100 agent steps (no
termination; ``info["success"]`` reports the task's success flag).

Differences from TD-MPC2, on purpose: Meta-World 3 replaced its v2 tasks with v3
ones (same names, observation and action layouts); TD-MPC2 returns the
observation from *before* the zero-action step it takes after each reset, these
envs return the one after it.

Building an env needs the ``metaworld`` extra, which pins ``mujoco==3.3.0``; the
``dmc`` extra needs ``mujoco>=3.17``, so the two live in separate environments.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pwm_agent.envs.task_sets import MT80

__all__ = ["METAWORLD_TASKS", "MetaWorldTaskEnv", "register_metaworld"]

ACTION_REPEAT = 2
NAMESPACE = "pwm_agent"
METAWORLD_TASKS: tuple[str, ...] = tuple(spec.name for spec in MT80 if spec.name.startswith("mw-"))


def _make_metaworld_env(task: str, seed: int | None) -> Any:
    """The raw goal-observable Meta-World env of ``mw-<name>``."""
    if task not in METAWORLD_TASKS:
        raise ValueError(f"Unknown Meta-World task {task!r}; MT80's are {sorted(METAWORLD_TASKS)}.")
    try:
        import metaworld
    except ImportError as err:
        raise ImportError(
            f"{task} needs Meta-World: pip install \"pwm_agent[metaworld]\" in an environment without the "
            "dmc extra (metaworld pins mujoco==3.3.0, dm_control needs mujoco>=3.17)."
        ) from err
    name = f"{task.removeprefix('mw-')}-v3-goal-observable"
    env = metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[name](seed=seed)
    env._freeze_rand_vec = False  # new goal and object positions at every reset, as TD-MPC2
    env.seeded_rand_vec = True  # ... drawn from the env's own generator (else from numpy's global one)
    return env


class MetaWorldTaskEnv(gym.Env):
    """One Meta-World task of MT80 (see the module docstring for the conventions).

    :param task: an MT80 Meta-World task name, e.g. ``"mw-reach"`` or ``"mw-door-open"``.
    :param action_repeat: simulator steps per agent step.
    :param seed: seed passed to the Meta-World constructor; goals are then drawn from a
        generator seeded by ``reset(seed=...)`` (or by Gymnasium's seeding on the first reset).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 40}

    def __init__(
        self, task: str, action_repeat: int = ACTION_REPEAT, seed: int | None = None, render_mode: str | None = None
    ) -> None:
        self.task, self.action_repeat, self.render_mode = task, action_repeat, render_mode
        self._env = _make_metaworld_env(task, seed)
        # Meta-World refuses steps past its own limit (500 raw steps); episodes here end by
        # TimeLimit, so lift it for longer ``max_episode_steps``.
        self._env.max_path_length = 2**31 - 1
        self._init_seed = seed
        self._seeded = False
        self.observation_space = spaces.Box(-np.inf, np.inf, self._env.observation_space.shape, np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, self._env.action_space.shape, np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is None and not self._seeded:
            seed = self._init_seed  # the constructor's seed makes the first reset reproducible
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # Meta-World's reset ignores its seed argument
            self._env.seed(int(self.np_random.integers(2**31 - 1)))
            self._seeded = True
        self._env.reset()
        obs, _, _, _, _ = self._env.step(np.zeros(self.action_space.shape, dtype=np.float32))
        return np.asarray(obs, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        reward = 0.0
        for _ in range(self.action_repeat):
            obs, r, _, _, info = self._env.step(action.copy())
            reward += float(r)
        return np.asarray(obs, dtype=np.float32), reward, False, False, {"success": float(info.get("success", 0.0))}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        self._env.render_mode = "rgb_array"
        return self._env.render()

    def close(self) -> None:
        self._env.close()


def register_metaworld() -> None:
    """Register every MT80 Meta-World task as ``pwm_agent/mw-<name>`` (idempotent; builds nothing)."""
    for spec in MT80:
        if not spec.name.startswith("mw-"):
            continue
        env_id = f"{NAMESPACE}/{spec.name}"
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point="pwm_agent.envs.mw_tasks:MetaWorldTaskEnv",
                max_episode_steps=spec.episode_length,
                kwargs={"task": spec.name},
            )
