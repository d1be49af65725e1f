"""World-model size presets and the configuration dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

__all__ = ["WorldModelConfig", "PRESETS", "make_config"]

RewardHead = Literal["scalar", "twohot"]


@dataclass(frozen=True)
class WorldModelConfig:
    """Shapes and options of a :class:`~pwm_agent.world_model.WorldModel`.

    :param latent_dim: latent size ``L`` (multiple of ``simnorm_dim``).
    :param enc_dims: hidden widths of the encoder.
    :param mlp_dims: hidden widths of the dynamics, reward and termination heads.
    :param simnorm_dim: SimNorm group size.
    :param reward_head: ``"scalar"`` (MSE on scaled rewards) or ``"twohot"``
        (cross-entropy over ``num_bins`` symlog bins on ``[vmin, vmax]``).
    :param termination_head: learn ``P(terminated | z')`` for episodic tasks.
    :param num_tasks: number of task-embedding rows (0: single task).
    :param task_dim: size of the task embedding.
    :param activation: hidden activation (``"mish"`` as in the paper).
    """

    latent_dim: int = 128
    enc_dims: tuple[int, ...] = (256,)
    mlp_dims: tuple[int, ...] = (256, 256)
    simnorm_dim: int = 8
    reward_head: RewardHead = "scalar"
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    termination_head: bool = True
    num_tasks: int = 0
    task_dim: int = 0
    activation: str = "mish"

    def __post_init__(self) -> None:
        if self.latent_dim % self.simnorm_dim:
            raise ValueError(
                f"latent_dim={self.latent_dim} must be a multiple of simnorm_dim={self.simnorm_dim}."
            )
        if self.reward_head not in ("scalar", "twohot"):
            raise ValueError(f"reward_head must be 'scalar' or 'twohot', got {self.reward_head!r}.")
        if self.num_tasks > 0 and self.task_dim <= 0:
            raise ValueError("A multi-task world model (num_tasks > 0) needs task_dim > 0.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WorldModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fixed)


def _tdmpc2(enc: int, mlp_dim: int, latent: int, enc_layers: int) -> WorldModelConfig:
    return WorldModelConfig(
        latent_dim=latent,
        enc_dims=(enc,) * max(enc_layers - 1, 1),
        mlp_dims=(mlp_dim, mlp_dim),
        reward_head="twohot",
    )


PRESETS: dict[str, WorldModelConfig] = {
    # Default for online learning on a CPU: small enough for one update per env step.
    # SiLU instead of Mish: several times cheaper on CPU, same learning on our benchmarks.
    "small": WorldModelConfig(latent_dim=64, enc_dims=(128,), mlp_dims=(128, 128), activation="silu"),
    # The authors' single-task (dflex) configuration.
    "pwm": WorldModelConfig(latent_dim=512, enc_dims=(256,), mlp_dims=(512, 512)),
    # TD-MPC2 model sizes (single-task shapes; multi-task adds task embeddings).
    "tdmpc2-1M": _tdmpc2(256, 384, 128, 2),
    "tdmpc2-5M": _tdmpc2(256, 512, 512, 2),
    "tdmpc2-19M": _tdmpc2(1024, 1024, 512, 3),
    "tdmpc2-48M": _tdmpc2(1792, 1792, 768, 4),
    "tdmpc2-317M": _tdmpc2(4096, 4096, 1376, 5),
}
"""Named world-model shapes: ``small`` (CPU default), ``pwm`` (the authors'
single-task model) and TD-MPC2's model sizes ``tdmpc2-1M`` ... ``tdmpc2-317M``."""


def make_config(preset: str | WorldModelConfig | dict[str, Any] = "small", **overrides: Any) -> WorldModelConfig:
    """Resolve a preset name, config or dict, then apply ``overrides``."""
    if isinstance(preset, WorldModelConfig):
        base = preset
    elif isinstance(preset, dict):
        base = WorldModelConfig.from_dict(preset)
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"Unknown world-model preset {preset!r}; choose one of {sorted(PRESETS)}.")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(base, **fixed)


