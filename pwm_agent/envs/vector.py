"""Adapter from ``gymnasium.vector.VectorEnv`` to Stable-Baselines3's ``VecEnv`` API."""

from __future__ import annotations

from typing import Any, Iterable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

__all__ = ["GymnasiumVecEnv"]


def _obs_at(obs: Any, i: int) -> Any:
    """Observation of sub-env ``i`` from a batched (array or dict) observation."""
    if isinstance(obs, dict):
        return {k: _obs_at(v, i) for k, v in obs.items()}
    return np.array(obs[i], copy=True)


def _rows(obs: Any, mask: np.ndarray) -> Any:
    """A copy of the sub-envs' rows where ``mask`` holds, of a batched (array or dict) observation."""
    if isinstance(obs, dict):
        return {k: _rows(v, mask) for k, v in obs.items()}
    return np.asarray(obs)[mask]


def _same(a: Any, b: Any) -> bool:
    """Equal observations (arrays or dicts of arrays; NaN equals NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a.shape == b.shape and bool(np.all((a == b) | ((a != a) & (b != b))))


def _split_infos(info: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Turn gymnasium's dict-of-arrays ``info`` (with ``_key`` masks) into one dict per env."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get(f"_{key}", np.ones(num_envs, dtype=bool))
        for i in np.flatnonzero(mask):
            out[i][key] = _split_infos(value, num_envs)[i] if isinstance(value, dict) else value[i]
    return out


class GymnasiumVecEnv(VecEnv):
    """Run a ``gymnasium.vector`` env (``SyncVectorEnv``, ``AsyncVectorEnv``, ...) as an SB3 ``VecEnv``.

    SB3 expects a finished sub-env to be reset inside the same ``step`` call, with
    its last observation in ``info["terminal_observation"]`` and
    ``info["TimeLimit.truncated"]`` set for truncations. The adapter provides this
    for every gymnasium autoreset mode:

    - ``SAME_STEP``: the terminal observation comes from ``info["final_obs"]``;
    - ``NEXT_STEP`` and ``DISABLED``: the returned observation *is* the terminal
      one; the finished sub-envs are then reset at once through
      ``reset(options={"reset_mask": dones})`` so no action is wasted on a
      no-op autoreset step.
    """

    def __init__(self, env: VectorEnv) -> None:
        if not isinstance(env, VectorEnv):
            raise TypeError(f"Expected a gymnasium.vector.VectorEnv, got {type(env).__name__}.")
        self.venv = env
        self.autoreset_mode = AutoresetMode(env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
        if (
            isinstance(env, AsyncVectorEnv)
            and not env.shared_memory
            and self.autoreset_mode == AutoresetMode.NEXT_STEP
        ):
            # gymnasium's async worker keeps its autoreset flag after a masked reset
            # when shared memory is off, so the next step would reset the env again.
            raise ValueError(
                "AsyncVectorEnv(shared_memory=False) cannot reset single sub-envs reliably in "
                "NEXT_STEP autoreset mode. Use shared_memory=True, or autoreset_mode="
                "gymnasium.vector.AutoresetMode.SAME_STEP (or DISABLED)."
            )
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] or None
        obs, info = self.venv.reset(seed=seeds, options=options)
        self.reset_infos = _split_infos(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = np.logical_or(terminated, truncated)
        infos = _split_infos(info, self.num_envs)
        if dones.any():
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                terminal = [info["final_obs"][i] if dones[i] else None for i in range(self.num_envs)]
                for i in np.flatnonzero(dones):
                    # the top-level info of a reset sub-env is its reset info; its last step's is in final_info
                    final = infos[i].pop("final_info", {})
                    self.reset_infos[i] = {k: v for k, v in infos[i].items() if k != "final_obs"}
                    infos[i] = dict(final)
            else:
                terminal = [_obs_at(obs, i) if dones[i] else None for i in range(self.num_envs)]
                obs = self._reset_done(obs, dones)
            for i in np.flatnonzero(dones):
                infos[i].pop("final_obs", None)
                infos[i]["terminal_observation"] = terminal[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, np.asarray(rewards, dtype=np.float32), dones, infos

    def _reset_done(self, obs: Any, dones: np.ndarray) -> Any:
        """Reset the finished sub-envs only (``reset_mask``); the others must keep their
        observations, else the env resets them all and the buffer would get fake steps."""
        advice = ("PWM resets finished sub-envs with reset(options={'reset_mask': dones}) in NEXT_STEP mode. "
                  "Make the env with autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP (e.g. "
                  "gym.make_vec(..., vector_kwargs={'autoreset_mode': AutoresetMode.SAME_STEP})).")
        running = _rows(obs, ~dones)  # copied: the env may reuse its buffer on reset
        try:
            new_obs, reset_info = self.venv.reset(options={"reset_mask": dones})
        except ValueError as err:  # e.g. gymnasium's vector NormalizeObservation
            raise ValueError(f"This vector env cannot reset single sub-envs ({err}). {advice}") from err
        if not _same(running, _rows(new_obs, ~dones)):
            raise RuntimeError(f"The vector env reset sub-envs that had not finished: it ignores the reset mask. "
                               f"{advice}")
        for i, reset_i in enumerate(_split_infos(reset_info, self.num_envs)):
            if dones[i]:
                self.reset_infos[i] = reset_i
        return new_obs

    def close(self) -> None:
        self.venv.close()

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        values = self.venv.get_attr(attr_name)
        return [values[i] for i in self._indices(indices)]

    def _all_indices(self, indices: VecEnvIndices, what: str) -> None:
        if self._indices(indices) != list(range(self.num_envs)):
            raise NotImplementedError(
                f"{what} on a subset of sub-envs is not possible through the gymnasium.vector API; "
                "call it on all envs (indices=None) or use an SB3 VecEnv."
            )

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._all_indices(indices, "set_attr")
        self.venv.set_attr(attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        self._all_indices(indices, "env_method")
        return list(self.venv.call(method_name, *method_args, **method_kwargs))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # Sub-envs of a gymnasium vector env are not reachable in general.
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Iterable[np.ndarray | None]:  # type: ignore[override]
        frames = self.venv.render()
        return list(frames) if frames is not None else [None] * self.num_envs
