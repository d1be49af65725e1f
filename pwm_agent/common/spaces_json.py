"""Gymnasium spaces as plain JSON (for pickle-free save files)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["space_from_dict", "space_to_dict"]


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """JSON description of a ``Box`` or ``Dict`` (of ``Box``) space."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[key, space_to_dict(sub)] for key, sub in space.spaces.items()]}
    raise ValueError(f"Cannot describe space {space} in a PWM save (only Box and Dict of Box).")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_dict`."""
    if data["type"] == "Box":
        dtype = np.dtype(data["dtype"])
        low = np.asarray(data["low"], dtype=dtype).reshape(data["shape"])
        high = np.asarray(data["high"], dtype=dtype).reshape(data["shape"])
        return spaces.Box(low, high, dtype=dtype)  # type: ignore[arg-type]
    if data["type"] == "Dict":
        return spaces.Dict({key: space_from_dict(sub) for key, sub in data["spaces"]})
    raise ValueError(f"Unknown space type {data['type']!r} in the PWM save.")
