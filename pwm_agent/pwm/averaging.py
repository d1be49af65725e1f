"""Exponential moving average (Polyak averaging) of the actor's weights during extraction."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["ActorAveraging"]


class ActorAveraging(BaseCallback):
    """Keeps an exponential moving average of ``actor``'s weights, updated after every
    gradient step, and puts it into the actor when training ends.

    Step ``t`` (from 1) sets ``average = d_t * average + (1 - d_t) * weights`` with
    ``d_t = min(decay, (1 + t) / (10 + t))``: the early, smaller decays keep the
    initial (untrained) weights from lingering in the average. Policy extraction from a
    frozen world model swings from one evaluation to the next as the actor chases model
    errors; the average of the last ``~1 / (1 - decay)`` steps moves smoothly.
    Evaluations run on the average through :meth:`applied`. Weights are copied in
    place, so views of them (the fast ``predict`` path, recorded CUDA graphs) stay valid.

    :param actor: the module whose parameters are averaged.
    :param decay: in ``(0, 1)``, e.g. ``0.99`` (an average over about 100 steps).
    """

    def __init__(self, actor: torch.nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"actor_ema_decay must be in (0, 1) (e.g. 0.99), got {decay}.")
        self.actor, self.decay = actor, decay
        self._params: list[torch.Tensor] = []
        self._average: list[torch.Tensor] = []
        self._updates = 0

    def _on_training_start(self) -> None:
        self._params = [p.detach() for p in self.actor.parameters()]
        self._average = [p.clone() for p in self._params]
        self._updates = 0

    @torch.no_grad()
    def _on_step(self) -> bool:
        self._updates += 1
        decay = min(self.decay, (1 + self._updates) / (10 + self._updates))
        for average, param in zip(self._average, self._params):
            average.lerp_(param, 1.0 - decay)
        return True

    def _on_training_end(self) -> None:
        """The average goes into the actor; the trained weights and the copy are dropped."""
        _copy(self._params, self._average)
        self._params, self._average = [], []

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the actor holds the averaged weights; the trained ones come
        back after. Outside training (before it starts, after it ends) it changes nothing."""
        if not self._average:
            yield
            return
        backup = [p.clone() for p in self._params]
        _copy(self._params, self._average)
        try:
            yield
        finally:
            _copy(self._params, backup)


@torch.no_grad()
def _copy(targets: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    for target, source in zip(targets, sources):
        target.copy_(source)
