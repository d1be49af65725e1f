"""CUDA-graph helpers that run everywhere: the memory key and the eager path off the GPU."""

from __future__ import annotations

import torch
from torch import nn

from pwm_agent.common.running_stats import TorchRunningMeanStd
from pwm_agent.pwm.graphs import MemoryKey, StepGraph


def test_memory_key_follows_storage_not_values() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    stats = TorchRunningMeanStd(shape=(4,))
    key = MemoryKey(model, stats)
    before = key()
    with torch.no_grad():
        model[0].weight.add_(1.0)  # in place, as an optimiser step
    stats.update(torch.randn(8, 4))  # in place too
    assert key() == before
    model.double()  # new parameter storage
    assert key() != before
    moved = key()
    stats.double()  # buffers are replaced, not parameters
    assert key() != moved


def test_step_graph_runs_eagerly_off_the_gpu() -> None:
    calls = []

    def step(x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"sum": x.sum() if y is None else (x + y).sum()}

    graph = StepGraph(step, "test")
    for _ in range(5):
        assert graph(torch.ones(3), None)["sum"].item() == 3.0
    assert graph(torch.ones(3), torch.ones(3))["sum"].item() == 6.0
    assert len(calls) == 6 and graph.num_graphs == 0 and graph.active
