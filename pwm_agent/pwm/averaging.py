"""Exponential moving average (Polyak averaging) of the actor's weights during extraction."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["ActorAveraging"]


class ActorAveraging(BaseCallback):
    """Keeps ``average <- decay * average + (1 - decay) * weights`` of the actor after
    every gradient step, and puts the average into the actor when training ends.

    Policy extraction from a frozen world model swings from one evaluation to the next
    as the actor chases model errors; the average of the last ``~1 / (1 - decay)``
    steps' weights moves smoothly. Evaluations run on the average through
    :meth:`applied`. Weights are copied in place, so views of them (the fast
    ``predict`` path, recorded CUDA graphs) stay valid.
    """

    def __init__(self, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"actor_ema_decay must be in (0, 1) (e.g. 0.99), got {decay}.")
        self.decay = decay
        self._params: list[torch.Tensor] = []
        self._average: list[torch.Tensor] = []

    def _on_training_start(self) -> None:
        self._params = [p.data for p in self.model.policy.actor.parameters()]
        self._average = [p.clone() for p in self._params]

    @torch.no_grad()
    def _on_step(self) -> bool:
        for average, param in zip(self._average, self._params):
            average.lerp_(param, 1.0 - self.decay)
        return True

    @torch.no_grad()
    def _on_training_end(self) -> None:
        _copy(self._params, self._average)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the actor holds the averaged weights; the trained ones come back after."""
        if not self._average:  # not started: nothing averaged yet
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
