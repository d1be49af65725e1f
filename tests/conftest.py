"""Shared fixtures and helpers: a tiny, fast PWM configuration and small test envs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.logger import KVWriter, Logger

# One intra-op thread per test process: on a small shared machine several
# threads per process are many times slower (thread contention) and make the
# results of a run depend on the thread count.
torch.set_num_threads(1)

# Tiny networks: every part of the algorithm runs, in milliseconds per update.
TINY_POLICY_KWARGS: dict[str, Any] = dict(
    world_model="small",
    world_model_kwargs=dict(latent_dim=16, enc_dims=[32], mlp_dims=[32, 32]),
    actor_arch=[32],
    critic_arch=[32],
)
# The suite is a CPU suite (CI has no GPU): tensors built by tests live on the CPU, so the
# agents do too, also on a machine with a GPU (tests/test_cuda.py covers the GPU).
TINY_KWARGS: dict[str, Any] = dict(
    device="cpu",
    horizon=4,
    batch_size=16,
    learning_starts=50,
    critic_iterations=1,
    critic_minibatches=2,
    buffer_size=2000,
)


def tiny_kwargs(**overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a tiny PWM agent (a fresh copy; ``overrides`` win)."""
    kwargs: dict[str, Any] = {
        **TINY_KWARGS,
        "policy_kwargs": {
            **TINY_POLICY_KWARGS,
            "world_model_kwargs": dict(TINY_POLICY_KWARGS["world_model_kwargs"]),
        },
    }
    kwargs.update(overrides)
    return kwargs


@pytest.fixture
def tiny() -> dict[str, Any]:
    """A fresh dict of tiny PWM constructor arguments."""
    return tiny_kwargs()


@pytest.fixture(autouse=True, scope="session")
def _sb3_logdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep SB3's default logger folders out of the system temp directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_log")))
        yield


@pytest.fixture(autouse=True)
def _cpu_unless_cuda_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """``device="auto"`` means the CPU in this suite (its tests build CPU tensors), also on a
    machine with a GPU; tests/test_cuda.py is the GPU suite and keeps the real choice."""
    if request.node.path.name == "test_cuda.py" or not torch.cuda.is_available():
        yield
        return
    import stable_baselines3.common.base_class as base_class

    import pwm_agent.pwm.policies as policies
    import pwm_agent.pwm.serialization as serialization
    import pwm_agent.shac.shac as shac_module

    real = base_class.get_device

    def cpu_for_auto(device: torch.device | str = "auto") -> torch.device:
        return real("cpu" if isinstance(device, str) and device == "auto" else device)

    with pytest.MonkeyPatch.context() as patch:
        for module in (base_class, policies, serialization, shac_module):
            patch.setattr(module, "get_device", cpu_for_auto)
        yield


class RecordingWriter(KVWriter):
    """An in-memory logger output: keeps every dumped ``{key: value}`` dict."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.records.append({**dict(key_values), "_step": step})

    def close(self) -> None:
        pass

    def values(self, key: str) -> list[Any]:
        """All dumped values of ``key``, in order."""
        return [record[key] for record in self.records if key in record]


def recording_logger() -> tuple[Logger, RecordingWriter]:
    """A logger whose only output is a :class:`RecordingWriter` (use with ``model.set_logger``)."""
    writer = RecordingWriter()
    return Logger(folder=None, output_formats=[writer]), writer


class CounterEnv(gym.Env):
    """Episodes of exactly ``length`` steps; the observation encodes where we are.

    ``obs = [env_id, episode, t]`` with ``t`` the step within the episode
    (0 after reset). The episode ends by termination (``terminate=True``) or
    truncation. The reward is ``t`` after the step.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, length: int = 5, terminate: bool = True, env_id: int = 0) -> None:
        self.length, self.terminate, self.env_id = length, terminate, env_id
        self.observation_space = spaces.Box(-1e6, 1e6, (3,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.episode, self.t = -1, 0

    def _obs(self) -> np.ndarray:
        return np.array([self.env_id, self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {"reset_episode": self.episode}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        end = self.t >= self.length
        return self._obs(), float(self.t), end and self.terminate, end and not self.terminate, {"step_t": self.t}


class DictObsWrapper(gym.ObservationWrapper):
    """Split a flat ``Box`` observation into a ``Dict`` of two ``Box`` entries."""

    def __init__(self, env: gym.Env, split: int = 2) -> None:
        super().__init__(env)
        box = env.observation_space
        assert isinstance(box, spaces.Box)
        self.split = split
        self.observation_space = spaces.Dict(
            {
                "a": spaces.Box(box.low[:split], box.high[:split], dtype=np.float32),
                "b": spaces.Box(box.low[split:], box.high[split:], dtype=np.float32),
            }
        )

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"a": observation[: self.split].astype(np.float32), "b": observation[self.split :].astype(np.float32)}


class ShiftedActionWrapper(gym.ActionWrapper):
    """Expose an asymmetric action space ``[low, high]`` and map it back to ``[-1, 1]``-ish bounds.

    Records every action it receives so tests can check they lie in the bounds.
    """

    def __init__(self, env: gym.Env, low: float = 0.0, high: float = 4.0) -> None:
        super().__init__(env)
        self.inner = env.action_space
        assert isinstance(self.inner, spaces.Box)
        n = self.inner.shape[0]
        self.action_space = spaces.Box(np.full(n, low, np.float32), np.full(n, high, np.float32), dtype=np.float32)
        self.received: list[np.ndarray] = []

    def action(self, action: np.ndarray) -> np.ndarray:
        self.received.append(np.array(action, copy=True))
        low, high = self.action_space.low, self.action_space.high
        unit = (np.asarray(action, dtype=np.float32) - low) / (high - low)  # [0, 1]
        return (self.inner.low + unit * (self.inner.high - self.inner.low)).astype(np.float32)


# Real-format TD-MPC2 checkpoints (8-10 MB each) live outside the repository, in the
# project's shared fixtures; their small reference outputs and configs are copied in
# tests/fixtures/tdmpc2. Point PWM_TDMPC2_FIXTURES elsewhere to use another copy.
SHARED_TDMPC2 = Path(
    os.environ.get("PWM_TDMPC2_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tdmpc2")
)


def tdmpc2_checkpoint(layout: str) -> Path:
    """The real mt30-1M checkpoint of ``layout`` ("legacy" or "current"); skips the test without it."""
    path = SHARED_TDMPC2 / f"mt30-1M-{layout}.pt"
    if not path.is_file():
        pytest.skip(f"TD-MPC2 fixture {path} is absent (set PWM_TDMPC2_FIXTURES to its folder)")
    return path


@pytest.fixture(scope="session")
def mt30_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MT30 checkpoint in TD-MPC2's current layout: the real mt30-1M fixture when present,
    otherwise a small one of the same task set and padded dims (30 tasks, obs 24, action 6)
    written by ``save_world_model``, so the agent-level tests run everywhere."""
    real = SHARED_TDMPC2 / "mt30-1M-current.pt"
    if real.is_file():
        return real
    from pwm_agent.checkpoints import save_world_model
    from pwm_agent.envs.task_sets import MT30
    from pwm_agent.world_model import WorldModel, WorldModelConfig

    torch.manual_seed(0)
    config = WorldModelConfig(latent_dim=32, enc_dims=(64,), mlp_dims=(64, 64), reward_head="twohot",
                              termination_head=False, num_tasks=30, task_dim=16)
    model = WorldModel(24, 6, config, action_dims=[t.action_dim for t in MT30])
    return save_world_model(model, tmp_path_factory.mktemp("mt30") / "mt30-small.pt", MT30)
