"""The built-in differentiable tasks: ``CartPoleSwingUp`` and ``DoublePendulum``.

Constants follow dflex's task files (``dt = 1/60``, 4 substeps, actions times
1000, 240-step episodes, reward weights, joint armature 0.1, the cart's rail
limit of +-4 m with stiffness 100 and damping 1). Body masses, lengths and
inertias are those of dflex's ``cartpole.urdf`` (cart 1 kg; pole 10 kg, 1 m,
centre of mass at 0.5 m, inertia 1 kg m^2 about it); dflex's double-pendulum
file is not public, so each of its two links is that same pole. Angles are
measured from the upright position, so ``theta = 0`` is the goal.
"""

from __future__ import annotations

import math

import torch

from pwm_agent.envs.diffsim.base import DiffSimEnv

__all__ = ["CartPoleSwingUp", "DoublePendulum", "wrap_angle"]

GRAVITY = 9.81
ARMATURE = 0.1
POLE_MASS = 10.0
POLE_LENGTH = 1.0
POLE_COM = 0.5
POLE_INERTIA = 1.0


def wrap_angle(theta: torch.Tensor) -> torch.Tensor:
    """Angles wrapped to ``(-pi, pi]`` (differentiable almost everywhere)."""
    return torch.atan2(torch.sin(theta), torch.cos(theta))


class CartPoleSwingUp(DiffSimEnv):
    """A pole hinged on a cart that a horizontal force moves along a rail.

    State ``q = [x, theta]``; observation ``[x, x_dot, sin theta, cos theta, theta_dot]``
    ``[N, 5]``; action ``[N, 1]``: the force on the cart (times 1000 N). Episodes start
    with the pole hanging down (``theta = pi``, plus dflex's noise when
    ``stochastic_init``). Reward ``-(theta^2 + 0.1 theta_dot^2 + 0.05 x^2 + 0.1 x_dot^2)``
    with ``theta`` wrapped to ``(-pi, pi]``; ``primal = -theta^2``.
    """

    num_joints = 2
    num_obs = 5
    num_actions = 1
    default_start_state = (0.0, math.pi, 0.0, 0.0)
    cart_mass = 1.0
    rail_limit = 4.0
    limit_stiffness = 100.0
    limit_damping = 1.0
    pole_angle_penalty = 1.0
    pole_velocity_penalty = 0.1
    cart_position_penalty = 0.05
    cart_velocity_penalty = 0.1
    cart_action_penalty = 0.0

    def rail_force(self, x: torch.Tensor, xd: torch.Tensor) -> torch.Tensor:
        """Spring-damper force ``[N]`` of the rail's end stops (zero inside the limits)."""
        below, above = torch.relu(-self.rail_limit - x), torch.relu(x - self.rail_limit)
        outside = ((below > 0) | (above > 0)).to(x.dtype)
        return self.limit_stiffness * (below - above) - self.limit_damping * xd * outside

    def accelerations(self, q: torch.Tensor, qd: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        x, theta, xd, thetad = q[:, 0], q[:, 1], qd[:, 0], qd[:, 1]
        m, l = POLE_MASS, POLE_COM
        sin, cos = torch.sin(theta), torch.cos(theta)
        # Mass matrix [[m11, m12], [m12, m22]] (armature on the diagonal) and right-hand side.
        m11 = self.cart_mass + m + ARMATURE
        m12 = m * l * cos
        m22 = m * l * l + POLE_INERTIA + ARMATURE
        b1 = force[:, 0] + self.rail_force(x, xd) + m * l * sin * thetad**2
        b2 = m * GRAVITY * l * sin
        det = m11 * m22 - m12**2
        return torch.stack([(m22 * b1 - m12 * b2) / det, (m11 * b2 - m12 * b1) / det], dim=-1)

    def observation(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        theta = q[:, 1:2]
        return torch.cat([q[:, 0:1], qd[:, 0:1], torch.sin(theta), torch.cos(theta), qd[:, 1:2]], dim=-1)

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        x, xd, thetad = obs[:, 0], obs[:, 1], obs[:, 4]
        theta = torch.atan2(obs[:, 2], obs[:, 3])
        self.primal = -self.pole_angle_penalty * theta**2
        return (
            self.primal
            - self.pole_velocity_penalty * thetad**2
            - self.cart_position_penalty * x**2
            - self.cart_velocity_penalty * xd**2
            - self.cart_action_penalty * (actions**2).sum(-1)
        )


class DoublePendulum(DiffSimEnv):
    """An acrobot: two poles in a chain hinged on a fixed base; only the elbow is driven.

    State ``q = [theta1, theta2]`` (``theta2`` relative to the first pole);
    observation ``[cos theta1, sin theta1, cos theta2, sin theta2, theta1_dot, theta2_dot]``
    ``[N, 6]``; action ``[N, 1]``: the elbow torque (times 1000 N m). Episodes start
    hanging down (``theta1 = pi``). Reward
    ``-(theta1^2 + theta2^2) - 0.1 (theta1_dot^2 + theta2_dot^2)``, angles wrapped;
    ``primal = -(theta1^2 + theta2^2)``.
    """

    num_joints = 2
    num_obs = 6
    num_actions = 1
    default_start_state = (math.pi, 0.0, 0.0, 0.0)
    pole_angle_penalty = 1.0
    pole_velocity_penalty = 0.1

    def accelerations(self, q: torch.Tensor, qd: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        theta1, theta2 = q[:, 0], q[:, 1]
        d1, d2 = qd[:, 0], qd[:, 1]
        m, lc, length, inertia = POLE_MASS, POLE_COM, POLE_LENGTH, POLE_INERTIA
        cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
        coupling = m * length * lc
        m11 = m * lc**2 + m * (length**2 + lc**2 + 2 * length * lc * cos2) + 2 * inertia + ARMATURE
        m12 = m * lc**2 + coupling * cos2 + inertia
        m22 = m * lc**2 + inertia + ARMATURE
        # Coriolis/centrifugal and gravity (angles from upright: gravity pushes away from 0).
        c1 = -coupling * sin2 * (2 * d1 * d2 + d2**2)
        c2 = coupling * sin2 * d1**2
        sin1, sin12 = torch.sin(theta1), torch.sin(theta1 + theta2)
        g1 = (m * lc + m * length) * GRAVITY * sin1 + m * lc * GRAVITY * sin12
        g2 = m * lc * GRAVITY * sin12
        b1 = g1 - c1
        b2 = force[:, 0] + g2 - c2
        det = m11 * m22 - m12**2
        return torch.stack([(m22 * b1 - m12 * b2) / det, (m11 * b2 - m12 * b1) / det], dim=-1)

    def observation(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        t1, t2 = q[:, 0:1], q[:, 1:2]
        return torch.cat([torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), qd], dim=-1)

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        theta1 = torch.atan2(obs[:, 1], obs[:, 0])
        theta2 = torch.atan2(obs[:, 3], obs[:, 2])
        self.primal = -self.pole_angle_penalty * (theta1**2 + theta2**2)
        return self.primal - self.pole_velocity_penalty * (obs[:, 4] ** 2 + obs[:, 5] ** 2)
