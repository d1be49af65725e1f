"""Atomic saving and pickle-free loading of PWM agents in SB3's zip format.

SB3's ``load`` cloudpickle-unpickles the archive's ``data`` entry, so a crafted
file runs code. PWM writes an extra ``pwm_config.json`` entry (plain JSON) and
rebuilds the agent from it and from ``torch.load(..., weights_only=True)``
tensors; ``data`` is kept for SB3 tooling but never read.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import os
import pathlib
import pickle
import warnings
import zipfile
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import (
    ConstantSchedule,
    FloatSchedule,
    LinearSchedule,
    check_for_correct_spaces,
    get_device,
    get_system_info,
)

from pwm_agent.common.atomic import atomic_write
from pwm_agent.common.schedules import constant_value
from pwm_agent.common.spaces_json import space_from_dict, space_to_dict

if TYPE_CHECKING:
    from pwm_agent.pwm.pwm import PWM

__all__ = [
    "CONFIG_ENTRY", "atomic_save", "check_saveable", "print_system_info", "read_archive", "safe_load",
    "space_from_dict", "space_to_dict",
]

CONFIG_ENTRY = "pwm_config.json"
FORMAT_VERSION = 1
STATE_KEYS = (
    "num_timesteps", "_total_timesteps", "_n_updates", "_episode_num", "skipped_transitions", "_n_offline_updates",
    "skipped_updates",
)


def _family(cls: type) -> str:
    """The algorithm a save belongs to (``"PWM"``, ``"SHAC"``); subclasses share their base's."""
    return str(getattr(cls, "algorithm_family", "PWM"))


def _policy_alias(model: PWM) -> str:
    for alias, cls in model.policy_aliases.items():
        if cls is model.policy_class:
            return alias
    raise ValueError(
        f"Custom policy class {model.policy_class.__name__} cannot be saved for pickle-free loading; "
        "register it in PWM.policy_aliases (subclass PWM) so it can be named in the file."
    )


def schedule_to_json(value: Any) -> float | dict[str, Any]:
    """A learning rate (float or SB3 schedule) as JSON.

    SB3's constant and linear schedules (and rl-zoo3's ``lin_`` schedule)
    round-trip exactly; any other callable
    is stored as a constant at its value at the start of training, with a warning.
    """
    if isinstance(value, FloatSchedule):
        return schedule_to_json(value.value_schedule)
    if isinstance(value, ConstantSchedule):
        return {"schedule": "constant", "value": float(value.val)}
    if isinstance(value, LinearSchedule):
        return {"schedule": "linear", "start": value.start, "end": value.end, "end_fraction": value.end_fraction}
    if type(value).__name__ == "SimpleLinearSchedule" and hasattr(value, "initial_value"):
        # rl-zoo3's ``lin_<value>``: linear from the value to 0 over training.
        return {"schedule": "linear", "start": float(value.initial_value), "end": 0.0, "end_fraction": 1.0}
    if callable(value):
        start = float(value(1.0))
        warnings.warn(
            f"The learning-rate schedule {value!r} is saved as its initial value {start}: only floats and "
            "SB3's ConstantSchedule/LinearSchedule are stored exactly (files never hold code).",
            stacklevel=4,
        )
        return {"schedule": "constant", "value": start}
    return float(value)


def schedule_from_json(value: float | dict[str, Any]) -> float | LinearSchedule | ConstantSchedule:
    """Inverse of :func:`schedule_to_json`."""
    if not isinstance(value, dict):
        return float(value)
    if value.get("schedule") == "linear":
        return LinearSchedule(value["start"], value["end"], value["end_fraction"])
    if value.get("schedule") == "constant":
        return ConstantSchedule(value["value"])
    raise ValueError(f"Unknown learning-rate schedule {value!r} in the PWM save.")


def _plain(value: Any) -> Any:
    """``value`` as JSON stores it: NumPy scalars as Python numbers, tuples as lists,
    dataclasses (a ``WorldModelConfig``) as dicts, paths as strings."""
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _json_ready(name: str, value: Any) -> Any:
    value = _plain(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Hyperparameter {name}={value!r} is not JSON-serialisable, so the agent cannot be saved for "
            "pickle-free loading. Use plain numbers/strings/lists (e.g. a float learning rate with "
            "learning_rate_final for linear decay)."
        ) from None
    return value


def _class_to_json(value: type | None) -> dict[str, str] | None:
    """A class argument (``replay_buffer_class``) is stored by name only: loading never imports it."""
    return None if value is None else {"class": f"{value.__module__}.{value.__qualname__}"}


def _hyper_to_json(hyper: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments (the learning rate already converted) as JSON values, or a
    ``ValueError`` naming the one that cannot be."""
    if "replay_buffer_class" in hyper:
        hyper = {**hyper, "replay_buffer_class": _class_to_json(hyper["replay_buffer_class"])}
    return {k: _json_ready(k, v) for k, v in hyper.items()}


def check_saveable(hyper: dict[str, Any], policy_kwargs: dict[str, Any] | None) -> None:
    """Raise now, not at the first ``save()`` (possibly deep into training, from a
    callback), if a constructor argument could not be written to the JSON config.
    Learning-rate schedules are exempt: they are saved as well as they can be."""
    _hyper_to_json({k: v for k, v in hyper.items() if not (k == "learning_rate" and callable(v))})
    _json_ready("policy_kwargs", policy_kwargs or {})


def _saved_class(name: str, value: Any, overrides: dict[str, Any], needed: bool) -> Any:
    """The class a save names for ``name``: it must come back through ``overrides`` to
    train (``needed``); to predict, the default class stands in, with a warning."""
    if not isinstance(value, dict) or name in overrides:
        return overrides.get(name, value)
    fix = f"Files never import code, so pass the class again: PWM.load(path, {name}=<that class>)."
    if needed:
        raise ValueError(f"The agent was saved with {name}={value['class']}. {fix}")
    warnings.warn(f"The agent was saved with {name}={value['class']}; it is loaded with the default "
                  f"class, which serves predict(). To train with yours: {fix}", UserWarning, stacklevel=4)
    return None


def make_config(model: PWM) -> dict[str, Any]:
    """The ``pwm_config.json`` content of ``model``."""
    from pwm_agent import __version__

    hyper = dict(model._init_kwargs)
    start = constant_value(hyper["learning_rate"])
    if start is not None and hyper.get("learning_rate_final") is not None:
        hyper["learning_rate"] = start  # a ConstantSchedule that decays is a float to the agent
    else:
        hyper["learning_rate"] = schedule_to_json(hyper["learning_rate"])
    hyper = _hyper_to_json(hyper)
    return {
        "format": "pwm_agent",
        "algorithm": _family(type(model)),
        "format_version": FORMAT_VERSION,
        "pwm_agent_version": __version__,
        "policy_class": _policy_alias(model),
        "policy_kwargs": _json_ready("policy_kwargs", model.policy.constructor_kwargs()),
        "hyperparameters": hyper,
        "observation_space": space_to_dict(model.observation_space),
        "action_space": space_to_dict(model.action_space),
        "dict_observation_space": (
            space_to_dict(dict_space) if (dict_space := getattr(model, "_dict_observation_space", None)) else None
        ),
        "n_envs": model.n_envs,
        "state": {key: int(getattr(model, key)) for key in STATE_KEYS if hasattr(model, key)},
    }


def atomic_save(model: PWM, path: Any, write: Callable[[Any], None]) -> None:
    """Write the SB3 archive with ``write`` plus the config entry; replace ``path`` atomically."""
    config = json.dumps(make_config(model), indent=1)
    if isinstance(path, io.IOBase):
        buffer = io.BytesIO()
        write(buffer)
        with zipfile.ZipFile(buffer, mode="a") as archive:
            archive.writestr(CONFIG_ENTRY, config)
        path.write(buffer.getvalue())
        return
    final = pathlib.Path(path)
    if final.suffix == "":
        final = final.with_suffix(".zip")

    def write_with_config(tmp: pathlib.Path) -> None:
        write(tmp)
        with zipfile.ZipFile(tmp, mode="a") as archive:
            archive.writestr(CONFIG_ENTRY, config)

    atomic_write(final, write_with_config)


def read_archive(path: Any, device: torch.device | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``(config, state dicts)`` from a PWM archive without unpickling anything."""
    if not isinstance(path, io.IOBase):
        path = pathlib.Path(path)
        if not path.exists() and path.with_suffix(".zip").exists():
            path = path.with_suffix(".zip")
    name = str(getattr(path, "name", path))
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if min((info.header_offset for info in archive.infolist()), default=1) != 0:
                # zipfile found an archive embedded further in (e.g. a .pth of a cut-off save).
                raise zipfile.BadZipFile("the archive does not start at the beginning of the file")
            if CONFIG_ENTRY not in names:
                raise ValueError(
                    f"{name} has no {CONFIG_ENTRY}: it was not saved by pwm_agent's PWM.save (is it "
                    "another algorithm's file?)."
                )
            config = json.loads(archive.read(CONFIG_ENTRY))
            params = {}
            for entry in names:
                if entry.endswith(".pth") and entry != "pytorch_variables.pth":
                    with archive.open(entry) as handle:
                        blob = io.BytesIO(handle.read())
                    params[entry[: -len(".pth")]] = torch.load(blob, map_location=device, weights_only=True)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, json.JSONDecodeError, pickle.UnpicklingError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{name} is not a readable PWM save (corrupt or truncated file): {err}") from err
    if config.get("format") != "pwm_agent" or config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{name} has an unsupported format; upgrade pwm_agent to load it.")
    return config, params


def print_system_info(path: Any) -> None:
    """SB3's ``print_system_info``: the system info stored in the archive (plain text;
    the archive's pickled ``data`` is not read), then this machine's."""
    position = path.tell() if isinstance(path, io.IOBase) else None
    load_from_zip_file(path, device="cpu", load_data=False, print_system_info=True)
    if position is not None:
        path.seek(position)
    get_system_info(print_info=True)


def _constructor_overrides(
    cls: type[PWM], custom_objects: dict[str, Any] | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` must be constructor arguments; ``custom_objects`` keys that are not
    are ignored, as SB3 ignores entries its file does not hold (rl-zoo3 passes some)."""
    names = set(inspect.signature(cls.__init__).parameters) - {"self", "policy", "env", "device", "_init_setup_model"}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"PWM.load got unknown argument(s) {unknown}; valid overrides: {sorted(names)}.")
    kept = {k: v for k, v in (custom_objects or {}).items() if k in names}
    return {**kept, **kwargs}


def safe_load(
    cls: type[PWM],
    path: Any,
    env: GymEnv | None,
    device: Any,
    custom_objects: dict[str, Any] | None,
    kwargs: dict[str, Any],
) -> PWM:
    """Rebuild an agent from :func:`read_archive` output (see :meth:`PWM.load`)."""
    overrides = _constructor_overrides(cls, custom_objects, kwargs)
    device = get_device(device)
    config, params = read_archive(path, device)
    saved, expected = config.get("algorithm", "PWM"), _family(cls)
    if saved != expected:
        raise ValueError(f"The file holds a {saved} agent, not a {expected} one: load it with {saved}.load.")
    hyper = {**config["hyperparameters"], **overrides}
    stored_rate = config["hyperparameters"].get("learning_rate")
    if (
        isinstance(stored_rate, dict) and stored_rate.get("schedule") == "constant"
        and "learning_rate_final" in hyper and not {"learning_rate", "learning_rate_final"} & set(overrides)
    ):
        hyper["learning_rate_final"] = None  # a stored constant schedule stays constant (it never decayed)
    if "replay_buffer_class" in hyper:
        hyper["replay_buffer_class"] = _saved_class(
            "replay_buffer_class", hyper["replay_buffer_class"], overrides, needed=env is not None
        )
    if "learning_rate" not in overrides:
        hyper["learning_rate"] = schedule_from_json(hyper["learning_rate"])
    if isinstance(hyper.get("train_freq"), list):  # JSON has no tuples
        hyper["train_freq"] = tuple(hyper["train_freq"])
    policy_kwargs = hyper.pop("policy_kwargs", config["policy_kwargs"])
    obs_space = space_from_dict(config["observation_space"])
    action_space = space_from_dict(config["action_space"])
    if env is not None:
        env = cls._wrap_env(env, hyper.get("verbose", 0))
        try:
            check_for_correct_spaces(env, obs_space, action_space)
        except ValueError as err:
            raise ValueError(
                f"The env does not match the saved agent ({err}). Pass an env with the spaces the agent "
                "was trained on (same wrappers, e.g. FlattenObservation or VecNormalize)."
            ) from err
    model = cls(config["policy_class"], env, device=device, policy_kwargs=policy_kwargs, _init_setup_model=False, **hyper)
    if env is None:
        model.observation_space, model.action_space = obs_space, action_space
        model.n_envs = int(config["n_envs"])
        dict_space = config["dict_observation_space"]
        if hasattr(model, "_dict_observation_space"):
            model._dict_observation_space = space_from_dict(dict_space) if dict_space else None  # type: ignore[assignment]
    for key in STATE_KEYS:
        if hasattr(model, key):
            setattr(model, key, int(config["state"].get(key, 0)))
    model._setup_model()
    try:
        model.set_parameters(params, exact_match=True, device=device)
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"The tensors in the save do not fit the agent it describes: {err}") from err
    return model
