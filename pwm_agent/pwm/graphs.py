"""CUDA graphs for the training steps: one replay instead of thousands of kernel launches.

PWM's networks are small and its updates are long chains of small kernels (an
imagined rollout of ``horizon`` steps and its backward pass, then
``critic_iterations x critic_minibatches`` critic steps), so on a GPU an eager
update spends most of its time launching kernels, not running them. :class:`StepGraph` records one
step function as a CUDA graph and replays it. Optimiser steps stay outside the
graphs (eager fused Adam), so learning-rate schedules, optimiser state loading
and checkpoints behave exactly as without graphs.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_map

__all__ = ["MemoryKey", "StepGraph"]

Signature = tuple[Any, ...]


def _signature(inputs: tuple[torch.Tensor | None, ...]) -> Signature:
    return tuple(None if x is None else (tuple(x.shape), x.dtype, x.device) for x in inputs)


class MemoryKey:
    """Where the tensors of ``modules`` live: a graph replays against the memory it was
    recorded with, so a changed key (``module.to(...)`` moved them) means recording anew.

    Parameters are listed once (``.to()`` keeps the objects, swapping their storage);
    buffers are read from the modules that own them (``.to()`` replaces buffer objects).
    A call costs a few microseconds.
    """

    def __init__(self, *modules: torch.nn.Module) -> None:
        self._params = [p for m in modules for p in m.parameters()]
        self._owners = [sub for m in modules for sub in m.modules() if sub._buffers]

    def __call__(self) -> int:
        pointers = [p.data_ptr() for p in self._params]
        pointers += [b.data_ptr() for owner in self._owners for b in owner._buffers.values() if b is not None]
        return hash(tuple(pointers))


class StepGraph:
    """Runs ``fn(*inputs)`` as a replayed CUDA graph once it has warmed up.

    The first ``warmup`` calls of each input signature (shapes, dtypes, which inputs
    are ``None``) run eagerly on a side stream (as CUDA graph capture requires); the
    next call records ``fn`` into a graph, and from then on each call copies its
    inputs into the graph's static input tensors and replays it. Every call is a
    real step: the recording call replays the graph right after recording it.
    Graphs run on the inputs' GPU whichever GPU is current.

    ``fn`` must not synchronise with the host (no ``.item()``, no Python branch on a
    tensor's value) and must return a pytree of tensors. The returned tensors are
    the graph's static outputs (in new containers each call): they are overwritten
    by the next call of the same signature, so use (or clone) them before calling
    again. In particular gradients a step leaves in ``.grad`` live in its graph's
    memory: return them and assign them before the optimiser step. Off CUDA, with
    ``enabled=False`` or for signatures beyond ``max_graphs``, calls run ``fn``
    eagerly. A failed recording (an op that cannot be captured) is tried again after
    another warm-up, ``retries`` times: failures seen on a GPU came and went between
    runs of the same program. After that, calls run ``fn`` eagerly and a warning gives
    the last error (``recording_errors`` lists every failure).

    :param fn: the step, taking tensors (or ``None``) and returning tensors.
    :param name: the step's name, for the warning.
    :param enabled: whether to use graphs on CUDA inputs.
    :param warmup: eager calls per signature before recording (at least 1).
    :param max_graphs: most graphs kept (each holds its own GPU memory).
    :param retries: recordings tried again after a failed one, before running eagerly for good.
    """

    def __init__(
        self, fn: Callable[..., Any], name: str, enabled: bool = True, warmup: int = 3, max_graphs: int = 8,
        retries: int = 1,
    ) -> None:
        self.fn, self.name, self.enabled, self.warmup = fn, name, enabled, max(int(warmup), 1)
        self.max_graphs, self.retries = max_graphs, max(int(retries), 0)
        self.failure: str | None = None
        self.recording_errors: list[str] = []
        self._seen: dict[Signature, int] = {}
        self._graphs: dict[Signature, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor | None, ...], Any]] = {}
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    @property
    def active(self) -> bool:
        """Whether calls may replay graphs (enabled and no recording has failed)."""
        return self.enabled and self.failure is None

    @property
    def num_graphs(self) -> int:
        """How many graphs (one per input signature) have been recorded."""
        return len(self._graphs)

    def __call__(self, *inputs: torch.Tensor | None) -> Any:
        tensors = [x for x in inputs if x is not None]
        if not self.active or not tensors or tensors[0].device.type != "cuda":
            return self.fn(*inputs)
        key = _signature(inputs)
        if key not in self._graphs and len(self._graphs) >= self.max_graphs:
            return self.fn(*inputs)
        with torch.cuda.device(tensors[0].device):
            return self._graphed_call(key, inputs, tensors[0].device)

    def _graphed_call(self, key: Signature, inputs: tuple[torch.Tensor | None, ...], device: torch.device) -> Any:
        entry = self._graphs.get(key)
        if entry is None:
            seen = self._seen.get(key, 0)
            if seen < self.warmup:
                self._seen[key] = seen + 1
                return self._side_stream_call(inputs, device)
            entry = self._record(key, inputs, device)
            if entry is None:
                return self.fn(*inputs)
        graph, static_inputs, static_outputs = entry
        for static, x in zip(static_inputs, inputs):
            if static is not None:
                static.copy_(x)
        graph.replay()
        return tree_map(lambda t: t, static_outputs)

    def _stream(self, device: torch.device) -> torch.cuda.Stream:
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device=device)
        return self._streams[device]

    def _side_stream_call(self, inputs: tuple[torch.Tensor | None, ...], device: torch.device) -> Any:
        stream = self._stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            out = self.fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(stream)
        return out

    def _record(self, key: Signature, inputs: tuple[torch.Tensor | None, ...], device: torch.device) -> Any:
        static_inputs = tuple(None if x is None else x.detach().clone() for x in inputs)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream(device)):
                static_outputs = self.fn(*static_inputs)
            static_outputs = tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, static_outputs)
        except RuntimeError as err:
            # The op that broke the capture raised first; capture_end's error follows it.
            first = err.__context__ if isinstance(err.__context__, Exception) else err
            self.recording_errors.append(f"{type(first).__name__}: {first}")
            torch.cuda.synchronize(device)
            if len(self.recording_errors) <= self.retries:
                self._seen[key] = 0  # warm up again, then record again
                return None
            self.failure = self.recording_errors[-1]
            warnings.warn(
                f"Could not record the {self.name} step as a CUDA graph ({self.failure.splitlines()[0]}; "
                f"{len(self.recording_errors)} tries); it runs eagerly from now on (slower, same results). "
                "PWM(..., cuda_graphs=False) skips the attempt.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        entry = (graph, static_inputs, static_outputs)
        self._graphs[key] = entry
        return entry
