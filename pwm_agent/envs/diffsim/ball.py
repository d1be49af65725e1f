"""``BouncingBall``: a point mass thrown at a wall, with penalty contacts of tunable stiffness.

The smallest contact-rich differentiable task: it shows how first-order
gradients through a simulator behave as contacts stiffen (the PWM paper's
motivating example). Ground at ``y = 0`` and a wall at ``x = wall_x``; a contact
pushes back with ``stiffness * depth - damping * normal velocity``.
"""

from __future__ import annotations

import math

import torch

from pwm_agent.envs.diffsim.base import DiffSimEnv

__all__ = ["BouncingBall"]


class BouncingBall(DiffSimEnv):
    """A 1 kg ball launched from ``(0, 1)`` at 4 m/s towards a wall at ``x = 2``.

    State ``q = [x, y]``; observation ``[x, y, x_dot, y_dot]`` ``[N, 4]``; action
    ``[N, 1]``: a horizontal thrust (times 2 N). Reward: ``x`` (be as far right as
    the wall allows). 30 steps of 1/30 s, 8 substeps each.

    :param contact_stiffness: contact spring constant in N/m (``1e3`` soft, ``1e5`` stiff).
    :param contact_damping: contact damping in N s/m.
    :param launch_angle: launch angle in radians (``start_state`` is built from it).
    """

    num_joints = 2
    num_obs = 4
    num_actions = 1
    dt = 1.0 / 30.0
    sim_substeps = 8
    action_strength = 2.0
    wall_x = 2.0
    launch_speed = 4.0

    def __init__(
        self,
        contact_stiffness: float = 1e3,
        contact_damping: float = 10.0,
        launch_angle: float = 0.3,
        episode_length: int = 30,
        stochastic_init: bool = False,
        **kwargs,
    ) -> None:
        self.contact_stiffness = float(contact_stiffness)
        self.contact_damping = float(contact_damping)
        self.default_start_state = self.launch_state(launch_angle)
        super().__init__(episode_length=episode_length, stochastic_init=stochastic_init, **kwargs)

    @classmethod
    def launch_state(cls, angle: float) -> tuple[float, float, float, float]:
        """``start_state`` of a throw at ``angle`` radians: ``(x, y, x_dot, y_dot)``."""
        return (0.0, 1.0, cls.launch_speed * math.cos(angle), cls.launch_speed * math.sin(angle))

    def contact_force(self, depth: torch.Tensor, normal_velocity: torch.Tensor) -> torch.Tensor:
        """Penalty force along the contact normal for a penetration ``depth`` (>= 0 when touching)."""
        touching = (depth > 0).to(depth.dtype)
        return touching * (self.contact_stiffness * depth - self.contact_damping * normal_velocity)

    def accelerations(self, q: torch.Tensor, qd: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        ground = self.contact_force(-q[:, 1], qd[:, 1])  # pushes up
        wall = self.contact_force(q[:, 0] - self.wall_x, -qd[:, 0])  # pushes left
        return torch.stack([force[:, 0] - wall, ground - 9.81], dim=-1)

    def observation(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        return torch.cat([q, qd], dim=-1)

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.primal = obs[:, 0]
        return self.primal
