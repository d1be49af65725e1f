"""Input validation for PWM: spaces, hyperparameters and transitions, with errors that name the fix."""

from __future__ import annotations

import dataclasses
import inspect
import platform
import warnings
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize, VecTransposeImage

from pwm_agent.buffers import SequenceReplayBuffer
from pwm_agent.envs import GymnasiumVecEnv, VecFlattenObservation
from pwm_agent.envs.wrappers import flat_box
from pwm_agent.world_model import WorldModelConfig
from pwm_agent.world_model.layers import ACTIVATIONS

__all__ = [
    "check_action_space",
    "check_env_spaces",
    "check_spaces",
    "check_hyperparameters",
    "check_compiler",
    "check_speed_options",
    "check_learning_starts",
    "check_learning_starts_value",
    "check_policy_kwargs",
    "finite_transitions",
    "zero_non_finite",
    "wrap_env",
]


def check_compiler() -> None:
    """``compile_updates`` on a CPU needs the C++ compiler that ``torch.compile`` builds with
    (found the way torch finds it: ``$CXX`` or ``g++`` on Linux)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except ImportError:  # another torch layout: let torch.compile report for itself
        return
    except Exception as error:  # torch raises InvalidCxxCompiler (a RuntimeError subclass)
        raise ValueError(
            "compile_updates=True runs the updates through torch.compile, which needs a C++ compiler on a CPU "
            f"and found none ({error}): install one (e.g. apt install g++, or point $CXX at one) or set "
            "compile_updates=False."
        ) from error


def check_speed_options(use_bf16: bool, compile_updates: bool, device_type: str) -> None:
    """Warn about speed options that would not help on ``device_type``: bf16 autocast on an
    x86 CPU without native bf16 instructions, ``compile_updates`` off the CPU."""
    if compile_updates and device_type != "cpu":
        warnings.warn(
            f"compile_updates=True only compiles updates on a CPU; on {device_type} the steps run as they would "
            "without it (on a GPU, cuda_graphs=True removes the launch overhead instead).",
            stacklevel=3,
        )
    if not use_bf16 or device_type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    if None in probes:  # this torch cannot tell
        return
    if not any(probe() for probe in probes):
        warnings.warn(
            "use_bf16=True on a CPU without native bf16 instructions (AVX512-BF16 or AMX): its bf16 matmuls are "
            "emulated, and an update runs about 10x slower than in fp32. Set use_bf16=False on this machine "
            "(compile_updates=True is the CPU speed-up that needs no bf16).",
            stacklevel=3,
        )


def check_hyperparameters(
    horizon: int,
    batch_size: int,
    model_iterations: int,
    critic_iterations: int,
    critic_minibatches: int,
    nan_policy: str,
    buffer_class: type | None,
) -> None:
    """Reject settings that cannot work before any env is built."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (windows per update), got {batch_size}.")
    if nan_policy not in ("raise", "skip"):
        raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}.")
    for name, value in (("model_iterations", model_iterations), ("critic_iterations", critic_iterations)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0 (0 freezes that part), got {value}.")
    if critic_minibatches < 1 or batch_size * horizon < critic_minibatches:
        raise ValueError(
            f"critic_minibatches={critic_minibatches} must be between 1 and batch_size * horizon "
            f"= {batch_size * horizon}."
        )
    if buffer_class is not None and not issubclass(buffer_class, SequenceReplayBuffer):
        raise ValueError(
            f"replay_buffer_class must be a SequenceReplayBuffer subclass (PWM samples windows of "
            f"consecutive steps), got {buffer_class.__name__}."
        )


def check_learning_starts_value(learning_starts: object) -> None:
    """``learning_starts`` is a whole number of env steps (``1e4`` too) or ``"auto"``."""
    whole = isinstance(learning_starts, (int, np.integer, float)) and float(learning_starts).is_integer()
    if learning_starts != "auto" and (isinstance(learning_starts, bool) or not whole or learning_starts < 0):
        raise ValueError(
            f"learning_starts must be a whole number of env steps >= 0 or \"auto\" (random actions until "
            f"five episodes have ended and 1000 steps are stored), got {learning_starts!r}."
        )


def check_learning_starts(learning_starts: int, horizon: int, n_envs: int) -> None:
    """A first world-model batch needs ``horizon`` stored steps in some env."""
    if learning_starts < horizon * n_envs:
        raise ValueError(
            f"learning_starts={learning_starts} is too small for horizon={horizon} with {n_envs} env(s): "
            f"training needs windows of {horizon} consecutive steps of one env, so set "
            f"learning_starts >= horizon * n_envs = {horizon * n_envs}."
        )


def _find_dict_space(env: VecEnv) -> spaces.Dict | None:
    while True:
        if isinstance(env, VecFlattenObservation):
            return env.dict_observation_space
        inner = getattr(env, "venv", None)
        if not isinstance(inner, VecEnv):
            return None
        env = inner


def check_action_space(action_space: spaces.Space) -> None:
    """PWM acts in a 1-D ``Box`` with finite bounds (tanh-squashed, then rescaled)."""
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(
            f"PWM needs a 1-D continuous Box action space, got {action_space}. Discrete actions are "
            "not supported: use SB3's DQN/PPO, or wrap the env to expose continuous actions."
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(
            f"The action space {action_space} has infinite bounds; PWM squashes actions with tanh and "
            "rescales them to the bounds. Declare the range the env really accepts, e.g. "
            "gymnasium.wrappers.TransformAction(env, lambda a: a, gymnasium.spaces.Box(low, high, shape)) "
            "(ClipAction does not help: it declares infinite bounds)."
        )


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, policy: Any) -> spaces.Dict | None:
    """Check spaces given without an env; return the ``Dict`` space if it will be flattened."""
    check_action_space(action_space)
    if isinstance(observation_space, spaces.Dict):
        flat_box(observation_space)  # raises for non-Box entries
        if _policy_name(policy) == "MlpPolicy":
            raise ValueError("You must use `MultiInputPolicy` when working with dict observation space, not MlpPolicy.")
        return observation_space
    _check_flat_box(observation_space)
    return None


def _policy_name(policy: Any) -> str:
    return policy if isinstance(policy, str) else getattr(policy, "__name__", "")


def _check_flat_box(obs_space: spaces.Space) -> None:
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(
            f"PWM supports flat Box observations (and Dict of Box, flattened), got {obs_space}. "
            "Flatten the observations (gymnasium.wrappers.FlattenObservation). Image observations are "
            "not supported: PWM's encoder is an MLP, so give it state features instead of pixels."
        )


def check_env_spaces(env: VecEnv, policy: Any) -> spaces.Dict | None:
    """Check the (wrapped) env's spaces; return the original ``Dict`` space if flattened."""
    check_action_space(env.action_space)
    # SB3 transposes images to channels-first: report the space the user's env has.
    _check_flat_box(env.venv.observation_space if isinstance(env, VecTransposeImage) else env.observation_space)
    dict_space = _find_dict_space(env)
    if dict_space is not None and _policy_name(policy) == "MlpPolicy":
        raise ValueError("You must use `MultiInputPolicy` when working with dict observation space, not MlpPolicy.")
    return dict_space


def wrap_env(
    env: GymEnv,
    verbose: int,
    monitor_wrapper: bool,
    sb3_wrap: Callable[[GymEnv, int, bool], VecEnv],
) -> VecEnv:
    """SB3's wrapping, plus: gymnasium vector envs are adapted, Dict observations flattened."""
    if isinstance(env, VectorEnv):
        env = VecMonitor(GymnasiumVecEnv(env))
    env = sb3_wrap(env, verbose, monitor_wrapper)
    check_action_space(env.action_space)  # before SB3's own bare assertion on the bounds
    if isinstance(env.observation_space, spaces.Dict):
        if _has_vec_normalize(env):
            raise ValueError(
                "VecNormalize over Dict observations is not supported by PWM: flatten the observations "
                "first (gymnasium.wrappers.FlattenObservation), then wrap with VecNormalize."
            )
        env = VecFlattenObservation(env)
    return env


def _has_vec_normalize(env: VecEnv) -> bool:
    while isinstance(env, VecEnv):
        if isinstance(env, VecNormalize):
            return True
        env = getattr(env, "venv", None)  # type: ignore[assignment]
    return False


def zero_non_finite(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` with NaN and +-inf replaced by 0."""
    return np.nan_to_num(np.asarray(array), nan=0.0, posinf=0.0, neginf=0.0)


def finite_transitions(obs: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """``[n_envs]`` mask of transitions whose observations and reward are all finite."""
    return (
        np.isfinite(obs).all(axis=-1)
        & np.isfinite(next_obs).all(axis=-1)
        & np.isfinite(np.asarray(rewards, dtype=np.float64))
    )


# SB3 policy_kwargs that PWM spells differently, with what to use instead.
_SB3_POLICY_KWARGS = {
    "net_arch": "actor_arch=[...] and critic_arch=[...] (hidden widths)",
    "activation_fn": "activation='silu' (a name: " + ", ".join(sorted(ACTIVATIONS)) + ")",
}


def _init_arguments(cls: type) -> set[str]:
    """Keyword names ``cls(...)`` accepts: its ``__init__``'s, plus, while an ``__init__``
    forwards ``**kwargs``, those of the next class up (a subclass ``__init__(self, *args,
    extra=1, **kwargs)`` accepts its parent's names too)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def check_policy_kwargs(
    policy: str | type, aliases: dict[str, type], policy_kwargs: dict[str, Any] | None
) -> None:
    """Unknown ``policy_kwargs`` (SB3's ``net_arch``, ...) and world-model fields raise
    with the accepted names, before any network is built. ``policy`` is a class or a
    name of ``aliases`` (an unknown name is left to SB3's own error)."""
    policy_class = aliases.get(policy, policy) if isinstance(policy, str) else policy
    if not isinstance(policy_class, type):
        return
    kwargs = policy_kwargs or {}
    accepted = _init_arguments(policy_class) - {"self", "observation_space", "action_space", "lr_schedule"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        hints = "; ".join(f"for {k} use {_SB3_POLICY_KWARGS[k]}" for k in unknown if k in _SB3_POLICY_KWARGS)
        raise TypeError(
            f"policy_kwargs {unknown} are not arguments of {policy_class.__name__}"
            + (f" ({hints})" if hints else "")
            + f". It takes: {sorted(accepted)}."
        )
    fields = {f.name for f in dataclasses.fields(WorldModelConfig)}
    for name in ("world_model_kwargs", "world_model"):
        value = kwargs.get(name)
        if isinstance(value, dict) and set(value) - fields:
            raise TypeError(
                f"{name} {sorted(set(value) - fields)} are not WorldModelConfig fields; valid: {sorted(fields)}."
            )
