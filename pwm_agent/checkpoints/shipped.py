"""The pretrained multi-task world model shipped with the package, and its demo data."""

from __future__ import annotations

from pathlib import Path

from pwm_agent.datasets import OfflineDataset, load_arrays

__all__ = ["SHIPPED", "SHIPPED_NAMES", "shipped_checkpoint", "shipped_episodes"]

_DIR = Path(__file__).resolve().parent.parent / "pretrained"
SHIPPED = "mt4-5M"
"""Name of the default shipped model: TD-MPC2's 5M shape on 4 MT30 tasks (walker-stand,
cartpole-swingup, reacher-easy, cup-catch), trained by
``examples/multitask/train_checkpoint.py``. ``"mt4-1M"`` (the 1M shape, less
pre-training, weaker policies) is shipped too: ``shipped_checkpoint("mt4-1M")``."""

SHIPPED_NAMES = ("mt4-5M", "mt4-1M")


def shipped_checkpoint(name: str = SHIPPED) -> Path:
    """Path of a shipped checkpoint (TD-MPC2 layout; load with ``PWM.from_pretrained``)."""
    path = _DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"No shipped checkpoint {name!r} (looked for {path}); shipped: {list(SHIPPED_NAMES)}.")
    return path


def shipped_episodes(task: str, name: str = SHIPPED) -> OfflineDataset:
    """A few episodes of ``task`` from the model's training data (2 of the data-collecting
    policy, 2 random), enough start states for a quick policy extraction."""
    folder = _DIR / name / task
    if not folder.is_dir():
        known = sorted(p.name for p in (_DIR / name).iterdir()) if (_DIR / name).is_dir() else []
        raise FileNotFoundError(f"No shipped episodes of {task!r} for {name!r}; available: {known}.")
    return load_arrays(folder, mmap=False)
