"""Callbacks for PWM's offline training (``pretrain_world_model``, ``extract_policy``)."""

from __future__ import annotations

import os

from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback

__all__ = ["OfflineCheckpointCallback", "warn_env_step_callbacks"]


class OfflineCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback`` for offline training: saves every ``save_freq``
    gradient steps of :meth:`~pwm_agent.PWM.pretrain_world_model` or
    :meth:`~pwm_agent.PWM.extract_policy` to ``{name_prefix}_{n}_updates.zip``, where
    ``n`` counts the agent's offline gradient steps over all offline calls.

    SB3's own callback names its files by env steps, which offline training does not
    take, so each of its saves would overwrite the previous one. Arguments are
    ``CheckpointCallback``'s (there is no replay buffer or ``VecNormalize`` offline).
    """

    def _checkpoint_path(self, checkpoint_type: str = "", extension: str = "") -> str:
        steps = int(getattr(self.model, "_n_offline_updates", 0))
        return os.path.join(self.save_path, f"{self.name_prefix}_{checkpoint_type}{steps}_updates.{extension}")


def warn_env_step_callbacks(callbacks: list[BaseCallback]) -> list[str]:
    """Messages for callbacks (also inside ``CallbackList``s) that count env steps, of
    which offline training takes none: SB3's ``CheckpointCallback`` would overwrite one file."""
    messages = []
    for callback in callbacks:
        if isinstance(callback, CallbackList):
            messages += warn_env_step_callbacks(list(callback.callbacks))
        elif type(callback) is CheckpointCallback:
            messages.append(
                "CheckpointCallback names its files by env steps, which offline training does not take: every "
                "save would overwrite the previous one. Use pwm_agent.pwm.OfflineCheckpointCallback (same "
                "arguments), which names them by gradient steps."
            )
    return messages
