"""Low-latency acting on the CPU: the encoder and actor evaluated with NumPy.

For a single observation each PyTorch op costs several microseconds of
dispatch overhead, which dominates ``predict``. This module walks the same
layers with NumPy views of the *live* parameter memory (``Tensor.numpy()``
shares storage), so optimiser steps and ``load_state_dict`` are seen at once
and nothing is copied.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import torch
from torch import nn

from pwm_agent.networks import Actor
from pwm_agent.world_model.layers import Mish, NormedLinear, SimNorm
from pwm_agent.world_model.model import WorldModel

__all__ = ["NumpyActor"]

Array = np.ndarray
Step = Callable[[Array], Array]


def _mish(x: Array) -> Array:
    e = np.exp(np.minimum(x, 20.0))
    n = e * (e + 2.0)
    return x * n / (n + 2.0)


def _silu(x: Array) -> Array:
    return x / (1.0 + np.exp(-x))


def _layer_norm(weight: Array, bias: Array, eps: float) -> Step:
    # Means as products with a column of 1/n: one call each instead of a sum and a division
    # (per-call overhead, not arithmetic, is what a single observation pays for).
    mean_column = np.full((weight.shape[0], 1), 1.0 / weight.shape[0], dtype=weight.dtype)

    def step(x: Array) -> Array:
        centred = x - x @ mean_column
        std = (centred * centred) @ mean_column  # [..., 1]
        std += eps
        np.sqrt(std, out=std)
        centred /= std
        centred *= weight
        centred += bias
        return centred

    return step


def _simnorm(dim: int) -> Step:
    def step(x: Array) -> Array:
        groups = x.reshape(*x.shape[:-1], -1, dim)
        e = np.exp(groups - groups.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).reshape(x.shape)

    return step


def _activation(module: nn.Module) -> Step:
    if isinstance(module, Mish):
        return _mish
    if isinstance(module, nn.SiLU):
        return _silu
    if isinstance(module, nn.ReLU):
        return lambda x: np.maximum(x, 0.0)
    if isinstance(module, nn.Tanh):
        return np.tanh
    if isinstance(module, nn.ELU):
        return lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    if isinstance(module, SimNorm):
        return _simnorm(module.dim)
    raise TypeError(f"No NumPy version of {type(module).__name__}")


def _linear(module: nn.Linear) -> Step:
    weight_t = module.weight.detach().numpy().T
    bias = module.bias.detach().numpy()
    return lambda x: x @ weight_t + bias


def _compile(sequential: nn.Sequential) -> list[Step]:
    steps: list[Step] = []
    for module in sequential:
        if isinstance(module, NormedLinear):
            if module.dropout is not None:
                raise TypeError("dropout layers are not supported by the NumPy path")
            steps.append(_linear(module))
            steps.append(_layer_norm(module.ln.weight.detach().numpy(), module.ln.bias.detach().numpy(), module.ln.eps))
            steps.append(_activation(module.act))
        elif isinstance(module, nn.Linear):
            steps.append(_linear(module))
        elif isinstance(module, nn.LayerNorm):
            steps.append(_layer_norm(module.weight.detach().numpy(), module.bias.detach().numpy(), module.eps))
        else:
            steps.append(_activation(module))
    return steps


class NumpyActor:
    """``obs [N, O]`` or ``[O]`` -> actions in ``[-1, 1]``, mirroring
    ``actor(world_model.encode(obs))`` for single-task models on the CPU.

    :raises TypeError: for models it cannot mirror (multi-task, dropout, GPU).
    """

    def __init__(self, world_model: WorldModel, actor: Actor) -> None:
        if world_model.task_emb is not None:
            raise TypeError("multi-task encoders use the PyTorch path")
        if next(world_model.parameters()).device.type != "cpu":
            raise TypeError("the NumPy path is for CPU models")
        self._anchor = world_model.encoder[0].weight
        self._anchor_ptr = self._anchor.data_ptr()
        self._encoder = _compile(world_model.encoder)
        self._mu = _compile(actor.mu)
        self._actor = actor
        self._mask = actor.action_mask.numpy()

    def is_current(self) -> bool:
        """False once the parameters were moved to new storage (e.g. ``.to(device)``)."""
        return self._anchor.data_ptr() == self._anchor_ptr

    def __call__(self, obs: Array, deterministic: bool) -> Array:
        x = np.asarray(obs, dtype=np.float32)
        for step in self._encoder:
            x = step(x)
        for step in self._mu:
            x = step(x)
        if not deterministic:
            std = self._actor.std().detach().numpy()
            # Noise from torch's generator, like the PyTorch path: one seed drives both.
            x = x + std * torch.randn(x.shape).numpy()
        return np.tanh(x) * self._mask


def make_numpy_actor(world_model: WorldModel, actor: Actor) -> NumpyActor | None:
    """A :class:`NumpyActor` when the model allows one, else ``None``."""
    try:
        return NumpyActor(world_model, actor)
    except TypeError:
        return None


