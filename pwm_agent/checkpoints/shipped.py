"""The pretrained multi-task world models shipped with the package, and their demo data."""

from __future__ import annotations

from pathlib import Path

from pwm_agent.datasets import OfflineDataset, load_arrays

__all__ = ["SHIPPED", "SHIPPED_NAMES", "shipped_checkpoint", "shipped_episodes"]

_DIR = Path(__file__).resolve().parent.parent / "pretrained"
SHIPPED = "mt4-1M"
"""Name of the default shipped model: TD-MPC2's 1M shape on 4 MT30 tasks (walker-stand,
cartpole-swingup, reacher-easy, cup-catch), trained by
``examples/multitask/train_checkpoint.py``; a policy extracts from its few shipped
episodes in minutes. ``"mt4-5M"`` (the 5M shape, four times the pre-training) is
shipped too, ``shipped_checkpoint("mt4-5M")``: its policies extracted from each task's
full training data beat the policies that collected it; its few shipped episodes
give a weaker quick extraction than its full data."""

SHIPPED_NAMES = ("mt4-1M", "mt4-5M")


def shipped_checkpoint(name: str = SHIPPED) -> Path:
    """Path of a shipped checkpoint (TD-MPC2 layout; load with ``PWM.from_pretrained``)."""
    path = _DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"No shipped checkpoint {name!r} (looked for {path}); shipped: {list(SHIPPED_NAMES)}.")
    return path


def shipped_episodes(task: str, name: str = SHIPPED) -> OfflineDataset:
    """A few episodes of ``task`` from the model's training data (2 of the data-collecting
    policy, 2 random; for ``mt4-5M`` also 4 from the online agent's learning history),
    enough start states for a quick policy extraction."""
    folder = _DIR / name / task
    if not folder.is_dir():
        known = sorted(p.name for p in (_DIR / name).iterdir()) if (_DIR / name).is_dir() else []
        raise FileNotFoundError(f"No shipped episodes of {task!r} for {name!r}; available: {known}.")
    return load_arrays(folder, mmap=False)
