"""The MT30 and MT80 task sets of TD-MPC2 and PWM, in task-id order.

MT30 is the first 30 entries of MT80 (19 standard dm_control tasks and 11 custom
ones); MT80 adds 50 Meta-World v2 tasks. Each task's own observation and action
dims and its episode length (env steps after action repeat 2 for dm_control) are as
TD-MPC2 builds them; multi-task models pad observations and actions to the largest.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

__all__ = ["MT30", "MT80", "TASK_SETS", "TaskSpec", "task_id"]


class TaskSpec(NamedTuple):
    """One task: name, its own obs and action dims, and its episode length."""

    name: str
    obs_dim: int
    action_dim: int
    episode_length: int


MT80: tuple[TaskSpec, ...] = (
    TaskSpec("walker-stand", 24, 6, 500),
    TaskSpec("walker-walk", 24, 6, 500),
    TaskSpec("walker-run", 24, 6, 500),
    TaskSpec("cheetah-run", 17, 6, 500),
    TaskSpec("reacher-easy", 6, 2, 500),
    TaskSpec("reacher-hard", 6, 2, 500),
    TaskSpec("acrobot-swingup", 6, 1, 500),
    TaskSpec("pendulum-swingup", 3, 1, 500),
    TaskSpec("cartpole-balance", 5, 1, 500),
    TaskSpec("cartpole-balance-sparse", 5, 1, 500),
    TaskSpec("cartpole-swingup", 5, 1, 500),
    TaskSpec("cartpole-swingup-sparse", 5, 1, 500),
    TaskSpec("cup-catch", 8, 2, 500),
    TaskSpec("finger-spin", 9, 2, 500),
    TaskSpec("finger-turn-easy", 12, 2, 500),
    TaskSpec("finger-turn-hard", 12, 2, 500),
    TaskSpec("fish-swim", 24, 5, 500),
    TaskSpec("hopper-stand", 15, 4, 500),
    TaskSpec("hopper-hop", 15, 4, 500),
    TaskSpec("walker-walk-backwards", 24, 6, 500),
    TaskSpec("walker-run-backwards", 24, 6, 500),
    TaskSpec("cheetah-run-backwards", 17, 6, 500),
    TaskSpec("cheetah-run-front", 17, 6, 500),
    TaskSpec("cheetah-run-back", 17, 6, 500),
    TaskSpec("cheetah-jump", 17, 6, 500),
    TaskSpec("hopper-hop-backwards", 15, 4, 500),
    TaskSpec("reacher-three-easy", 8, 3, 500),
    TaskSpec("reacher-three-hard", 8, 3, 500),
    TaskSpec("cup-spin", 8, 2, 500),
    TaskSpec("pendulum-spin", 3, 1, 500),
    TaskSpec("mw-assembly", 39, 4, 100),
    TaskSpec("mw-basketball", 39, 4, 100),
    TaskSpec("mw-button-press-topdown", 39, 4, 100),
    TaskSpec("mw-button-press-topdown-wall", 39, 4, 100),
    TaskSpec("mw-button-press", 39, 4, 100),
    TaskSpec("mw-button-press-wall", 39, 4, 100),
    TaskSpec("mw-coffee-button", 39, 4, 100),
    TaskSpec("mw-coffee-pull", 39, 4, 100),
    TaskSpec("mw-coffee-push", 39, 4, 100),
    TaskSpec("mw-dial-turn", 39, 4, 100),
    TaskSpec("mw-disassemble", 39, 4, 100),
    TaskSpec("mw-door-open", 39, 4, 100),
    TaskSpec("mw-door-close", 39, 4, 100),
    TaskSpec("mw-drawer-close", 39, 4, 100),
    TaskSpec("mw-drawer-open", 39, 4, 100),
    TaskSpec("mw-faucet-open", 39, 4, 100),
    TaskSpec("mw-faucet-close", 39, 4, 100),
    TaskSpec("mw-hammer", 39, 4, 100),
    TaskSpec("mw-handle-press-side", 39, 4, 100),
    TaskSpec("mw-handle-press", 39, 4, 100),
    TaskSpec("mw-handle-pull-side", 39, 4, 100),
    TaskSpec("mw-handle-pull", 39, 4, 100),
    TaskSpec("mw-lever-pull", 39, 4, 100),
    TaskSpec("mw-peg-insert-side", 39, 4, 100),
    TaskSpec("mw-peg-unplug-side", 39, 4, 100),
    TaskSpec("mw-pick-out-of-hole", 39, 4, 100),
    TaskSpec("mw-pick-place", 39, 4, 100),
    TaskSpec("mw-pick-place-wall", 39, 4, 100),
    TaskSpec("mw-plate-slide", 39, 4, 100),
    TaskSpec("mw-plate-slide-side", 39, 4, 100),
    TaskSpec("mw-plate-slide-back", 39, 4, 100),
    TaskSpec("mw-plate-slide-back-side", 39, 4, 100),
    TaskSpec("mw-push-back", 39, 4, 100),
    TaskSpec("mw-push", 39, 4, 100),
    TaskSpec("mw-push-wall", 39, 4, 100),
    TaskSpec("mw-reach", 39, 4, 100),
    TaskSpec("mw-reach-wall", 39, 4, 100),
    TaskSpec("mw-shelf-place", 39, 4, 100),
    TaskSpec("mw-soccer", 39, 4, 100),
    TaskSpec("mw-stick-push", 39, 4, 100),
    TaskSpec("mw-stick-pull", 39, 4, 100),
    TaskSpec("mw-sweep-into", 39, 4, 100),
    TaskSpec("mw-sweep", 39, 4, 100),
    TaskSpec("mw-window-open", 39, 4, 100),
    TaskSpec("mw-window-close", 39, 4, 100),
    TaskSpec("mw-bin-picking", 39, 4, 100),
    TaskSpec("mw-box-close", 39, 4, 100),
    TaskSpec("mw-door-lock", 39, 4, 100),
    TaskSpec("mw-door-unlock", 39, 4, 100),
    TaskSpec("mw-hand-insert", 39, 4, 100),
)
MT30: tuple[TaskSpec, ...] = MT80[:30]
TASK_SETS: dict[str, tuple[TaskSpec, ...]] = {"mt30": MT30, "mt80": MT80}


def task_id(task: str | int, tasks: Sequence[TaskSpec] = MT80) -> int:
    """The id of ``task`` (a name or an id) in ``tasks``; a clear error when unknown."""
    names = [spec.name for spec in tasks]
    if not isinstance(task, str):
        task = int(task)  # numpy integers too
        if not 0 <= task < len(names):
            raise ValueError(f"Task id {task} is outside the task set's 0..{len(names) - 1}.")
        return task
    if task not in names:
        close = [n for n in names if task.split("-")[0] in n][:5]
        hint = f" Similar: {close}." if close else ""
        raise ValueError(f"Unknown task {task!r}.{hint} Known tasks: {', '.join(names)}.")
    return names.index(task)
