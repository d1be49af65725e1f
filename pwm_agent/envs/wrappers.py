"""VecEnv wrappers used by the agent."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn, VecEnvWrapper

__all__ = ["VecFlattenObservation", "flat_box", "flatten_observation"]


def flatten_observation(space: spaces.Dict, obs: dict[str, Any], batched: bool) -> np.ndarray:
    """Flatten a ``Dict`` observation (``[N, ...]`` per key when ``batched``) to ``[N, D]`` or ``[D]``.

    Keys are concatenated in the space's (sorted) key order, as
    ``gymnasium.spaces.flatten`` does.
    """
    missing = set(space.spaces) - set(obs)
    if missing:
        raise ValueError(f"Observation is missing keys {sorted(missing)} of the observation space {space}.")
    parts = []
    for key, sub in space.spaces.items():
        value = np.asarray(obs[key], dtype=np.float32)
        parts.append(value.reshape(value.shape[0], -1) if batched else value.reshape(-1))
        if int(np.prod(sub.shape)) != parts[-1].shape[-1]:
            raise ValueError(f"Observation key {key!r} has shape {value.shape}, expected {sub.shape}.")
    return np.concatenate(parts, axis=-1)


def flat_box(space: spaces.Dict) -> spaces.Box:
    """The ``Box`` that :func:`flatten_observation` maps ``space`` into."""
    for key, sub in space.spaces.items():
        if not isinstance(sub, spaces.Box):
            raise ValueError(
                f"Dict observation key {key!r} is {sub}; only Box entries can be flattened. "
                "Wrap the env to turn it into a Box (e.g. gymnasium's FlattenObservation)."
            )
    low = np.concatenate([np.broadcast_to(s.low, s.shape).reshape(-1) for s in space.spaces.values()])
    high = np.concatenate([np.broadcast_to(s.high, s.shape).reshape(-1) for s in space.spaces.values()])
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


class VecFlattenObservation(VecEnvWrapper):
    """Flatten ``Dict`` observations of Box entries into one ``Box`` vector.

    ``dict_observation_space`` keeps the original space (used to flatten
    observations given to ``predict``).
    """

    def __init__(self, venv: VecEnv) -> None:
        if not isinstance(venv.observation_space, spaces.Dict):
            raise ValueError(f"VecFlattenObservation needs a Dict observation space, got {venv.observation_space}.")
        self.dict_observation_space = venv.observation_space
        super().__init__(venv, observation_space=flat_box(venv.observation_space))

    def _flat(self, obs: dict[str, Any]) -> np.ndarray:
        return flatten_observation(self.dict_observation_space, obs, batched=True)

    def reset(self) -> VecEnvObs:
        return self._flat(self.venv.reset())  # type: ignore[arg-type]

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            terminal = info.get("terminal_observation")
            if isinstance(terminal, dict):
                info["terminal_observation"] = flatten_observation(self.dict_observation_space, terminal, False)
        return self._flat(obs), rewards, dones, infos  # type: ignore[arg-type]
