"""Contact-rich differentiable locomotion tasks on newton's Featherstone solver.

``NewtonAnt`` and ``NewtonHopper`` follow the dflex tasks of PWM's DiffRL fork
(``dt = 1/60`` with 16 substeps, dflex's densities, joint armature/damping/limit
gains, contact stiffness/damping/friction, action strengths, observations,
rewards and early termination; 1000-step episodes) with the interface of
:mod:`pwm_agent.envs.diffsim.base`: ``reset(env_ids=None, grads=False,
force_reset=True)``, ``step(actions [N, A]) -> (obs [N, O], rew [N], done [N],
extras)``, rewards from the observation *before* the step, finished envs reset
inside ``step``. Gradients flow through the physics via
:class:`~pwm_agent.envs.diffsim.newton_backend.NewtonSimulation`.

Differences from dflex shared by both tasks: newton's world is z-up (dflex's is
y-up), so heights are ``z`` and the models are newton's MJCF imports of
``nv_ant.xml`` (bundled with newton) and Gymnasium's ``hopper.xml``; ground
contact uses sphere/capsule centres against the plane ``z = 0`` (dflex used the
same kind of fixed contact points); envs whose state is not finite are
terminated (and reset) instead of propagating NaNs.

Needs the optional extra: ``pip install "pwm_agent[newton]"``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from pwm_agent.envs.diffsim.base import BatchedEnvInterface
from pwm_agent.envs.diffsim.newton_backend import (
    INSTALL_HINT,
    NewtonSimulation,
    newton,
    warp_device,
)

__all__ = ["INSTALL_HINT", "NewtonAnt", "NewtonEnv", "NewtonHopper", "quat_rotate"]


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors ``v [N, 3]`` by unit quaternions ``q [N, 4]`` (``x, y, z, w`` order)."""
    xyz, w = q[:, :3], q[:, 3:4]
    t = 2.0 * torch.cross(xyz, v, dim=-1)
    return v + w * t + torch.cross(xyz, t, dim=-1)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton products ``a b`` of quaternions ``[N, 4]`` (``x, y, z, w``)."""
    av, aw, bv, bw = a[:, :3], a[:, 3:4], b[:, :3], b[:, 3:4]
    return torch.cat([aw * bv + bw * av + torch.cross(av, bv, dim=-1), aw * bw - (av * bv).sum(-1, keepdim=True)], -1)


def _mjcf_text(path: Path, geom_density: float | None = None) -> str:
    """The MJCF file at ``path`` without its floor, optionally with every geom's default density set."""
    if not path.is_file():
        raise FileNotFoundError(
            f"MJCF model {path} not found; reinstall the package that ships it (nv_ant.xml: newton, "
            f'{INSTALL_HINT}; hopper.xml: gymnasium, pip install "gymnasium>=1.0").'
        )
    root = ET.parse(path).getroot()
    world = root.find("worldbody")
    for geom in list(world.findall("geom")) if world is not None else []:
        if geom.get("type") == "plane":
            world.remove(geom)
    if geom_density is not None:
        for default in root.iter("default"):
            for geom in default.findall("geom"):
                geom.set("density", str(geom_density))
        for geom in root.iter("geom"):
            if "density" in geom.attrib:
                geom.set("density", str(geom_density))
    return ET.tostring(root, encoding="unicode")


class NewtonEnv(BatchedEnvInterface):
    """Base class of the newton-backed tasks (dflex's env interface).

    :param num_envs: number of simulated envs ``N``.
    :param device: torch device (``"cpu"`` or ``"cuda:i"``); the newton model lives on the matching warp device.
    :param episode_length: control steps per episode (dflex: 1000).
    :param stochastic_init: perturb start states with dflex's ``stochastic_init`` noise (on by
        default like the other built-in envs and DiffRL's SHAC configs; dflex's own default is off).
    :param no_grad: never record gradients (SHAC needs ``False``).
    :param seed: seed of the env's random generator (start states).
    :param mass_matrix_interval: Featherstone mass-matrix update interval in substeps
        (default: once per control step, dflex's ``MM_caching_frequency = 16``).
    """

    num_obs: int = 0
    num_actions: int = 0
    dt: float = 1.0 / 60.0
    sim_substeps: int = 16
    action_strength: float = 200.0

    def __init__(
        self,
        num_envs: int = 64,
        device: torch.device | str = "cpu",
        episode_length: int = 1000,
        stochastic_init: bool = True,
        no_grad: bool = False,
        seed: int | None = None,
        mass_matrix_interval: int | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}.")
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}.")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.episode_length = self.max_episode_steps = int(episode_length)
        self.stochastic_init = stochastic_init
        self.no_grad = no_grad
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)
        model = self.build_model(self.num_envs, self.device)
        self.sim = NewtonSimulation(
            model, self.num_envs, self.device, self.dt, self.sim_substeps, mass_matrix_interval=mass_matrix_interval
        )
        self.num_joint_q = self.sim.coords_per_env
        self.num_joint_qd = self.sim.dofs_per_env
        if self.num_joint_qd < self.num_actions:
            raise ValueError(f"{type(self).__name__}: {self.num_joint_qd} dofs cannot take {self.num_actions} actions.")
        q0 = torch.as_tensor(model.joint_q.numpy(), device=self.device).view(self.num_envs, -1)[0]
        self.start_joint_q = self.default_joint_q(q0.clone())
        self.start_joint_qd = torch.zeros(self.num_joint_qd, device=self.device)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.num_obs,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.num_actions,), np.float32)
        self.progress_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.joint_q, self.joint_qd = self._start_states(self.num_envs)
        self.actions = torch.zeros(self.num_envs, self.num_actions, device=self.device)
        self.primal = torch.zeros(self.num_envs, device=self.device)
        self.obs_buf = self.observation(self.joint_q, self.joint_qd, self.actions)

    # ------------------------------------------------------------- task hooks
    def build_model(self, num_envs: int, device: torch.device) -> Any:
        """The finalized ``newton.Model`` with ``num_envs`` copies of the robot."""
        raise NotImplementedError

    def default_joint_q(self, imported: torch.Tensor) -> torch.Tensor:
        """Start joint coordinates ``[Jq]`` from the imported pose ``[Jq]``."""
        return imported

    def perturb(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random start states near ``q [n, Jq]``, ``qd [n, Jqd]`` (``stochastic_init``)."""
        return q, qd

    def observation(self, q: torch.Tensor, qd: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Observations ``[N, O]`` of ``q [N, Jq]``, ``qd [N, Jqd]`` and the last actions ``[N, A]``."""
        raise NotImplementedError

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Reward ``[N]`` of the observation ``[N, O]`` and clipped action ``[N, A]``; sets ``self.primal``."""
        raise NotImplementedError

    def termination(self, obs: torch.Tensor) -> torch.Tensor:
        """Early-termination flags ``[N]`` (bool) of observations ``[N, O]``."""
        return torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)

    # ---------------------------------------------------------- model helpers
    @staticmethod
    def set_per_dof(model: Any, name: str, values: np.ndarray) -> None:
        """Assign ``values`` (one per dof of one env, tiled over envs) to the model array ``name``."""
        array = getattr(model, name)
        array.assign(np.resize(np.asarray(values, dtype=np.float32), array.shape[0]))

    def set_joint_gains(self, model: Any, armature: float, hinge_damping: float) -> None:
        """dflex's joint settings: ``armature`` on every dof, ``hinge_damping`` on the actuated
        hinges (the last ``num_actions`` dofs), joint limits 1e3 / 10, no position targets."""
        dofs = model.joint_dof_count // self.num_envs
        hinge = np.arange(dofs) >= dofs - self.num_actions
        self.set_per_dof(model, "joint_armature", np.full(dofs, armature))
        self.set_per_dof(model, "joint_damping", np.where(hinge, hinge_damping, 0.0))
        self.set_per_dof(model, "joint_limit_ke", np.full(dofs, 1.0e3))
        self.set_per_dof(model, "joint_limit_kd", np.full(dofs, 10.0))
        self.set_per_dof(model, "joint_target_ke", np.zeros(dofs))
        self.set_per_dof(model, "joint_target_kd", np.zeros(dofs))

    @staticmethod
    def set_contact_material(model: Any, ke: float, kd: float, kf: float, mu: float) -> None:
        """Penalty-contact normal stiffness/damping, friction gain and coefficient of every shape."""
        for name, value in (("ke", ke), ("kd", kd), ("kf", kf), ("mu", mu), ("ka", 0.0)):
            getattr(model, f"shape_material_{name}").fill_(value)

    @staticmethod
    def finalize(builder: Any, num_envs: int, device: torch.device) -> Any:
        """Replicate ``builder`` ``num_envs`` times at the origin and finalize it on ``device``."""
        scene = newton.ModelBuilder()
        scene.replicate(builder, num_envs)
        return scene.finalize(device=warp_device(device), requires_grad=False)

    # -------------------------------------------------------------- interface
    def _step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        n, a = self.num_envs, self.num_actions
        actions = torch.as_tensor(actions, device=self.device).to(torch.float32).reshape(n, a).clamp(-1.0, 1.0)
        rew = self.reward(self.obs_buf, actions)
        passive = torch.zeros(n, self.num_joint_qd - a, device=self.device)
        joint_f = torch.cat([passive, actions * self.action_strength], dim=-1)
        q, qd = self.sim.step(self.joint_q, self.joint_qd, joint_f, no_grad=self.no_grad)
        self.joint_q, self.joint_qd = q.view(n, self.num_joint_q), qd.view(n, self.num_joint_qd)
        self.actions = actions
        self.progress_buf = self.progress_buf + 1
        obs = self.observation(self.joint_q, self.joint_qd, self.actions)
        finite = torch.isfinite(obs).all(-1)
        termination = self.termination(obs) | ~finite
        truncation = self.progress_buf > self.episode_length - 1
        extras = {"obs_before_reset": obs, "termination": termination, "truncation": truncation, "primal": self.primal}
        done = termination | truncation
        self._reset_where(done)
        self.obs_buf = self.observation(self.joint_q, self.joint_qd, self.actions)
        return self.obs_buf, rew, done, extras

    def _reset_where(self, done: torch.Tensor) -> None:
        """Fresh start states, zero actions and progress where ``done [N]`` (no host sync)."""
        q0, qd0 = self._start_states(self.num_envs)
        keep = ~done.unsqueeze(-1)
        self.joint_q = torch.where(keep, self.joint_q, q0)
        self.joint_qd = torch.where(keep, self.joint_qd, qd0)
        self.actions = torch.where(keep, self.actions, torch.zeros_like(self.actions))
        self.progress_buf = torch.where(done, torch.zeros_like(self.progress_buf), self.progress_buf)

    def reset(
        self, env_ids: torch.Tensor | Sequence[int] | None = None, grads: bool = False, force_reset: bool = True
    ) -> torch.Tensor:
        """Reset ``env_ids`` (all by default) to start states, or with ``grads=True`` only cut
        the autograd graph behind the current state. Returns obs ``[N, O]``."""
        if grads:
            return self.initialize_trajectory()
        if env_ids is None and not force_reset:
            return self.obs_buf
        done = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        if env_ids is None:
            done[:] = True
        else:
            done[torch.as_tensor(env_ids, dtype=torch.long, device=self.device).reshape(-1)] = True
        self.clear_grad()
        self._reset_where(done)
        self.obs_buf = self.observation(self.joint_q, self.joint_qd, self.actions)
        return self.obs_buf

    def clear_grad(self) -> None:
        """Cut the autograd graph behind the current state (dflex's ``clear_grad``)."""
        self.joint_q, self.joint_qd, self.actions = self.joint_q.detach(), self.joint_qd.detach(), self.actions.detach()

    def initialize_trajectory(self) -> torch.Tensor:
        """Start a differentiable trajectory from the current state: obs ``[N, O]``."""
        self.clear_grad()
        self.obs_buf = self.observation(self.joint_q, self.joint_qd, self.actions)
        return self.obs_buf

    def get_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the joint coordinates ``[N, Jq]`` and velocities ``[N, Jqd]``."""
        return self.joint_q.detach().clone(), self.joint_qd.detach().clone()

    def set_state(self, joint_q: torch.Tensor, joint_qd: torch.Tensor) -> torch.Tensor:
        """Set joint coordinates ``[N, Jq]`` and velocities ``[N, Jqd]`` (may require grad); returns obs."""
        shapes = (self.num_envs, self.num_joint_q), (self.num_envs, self.num_joint_qd)
        if (tuple(joint_q.shape), tuple(joint_qd.shape)) != shapes:
            raise ValueError(
                f"set_state expects joint_q {shapes[0]} and joint_qd {shapes[1]}, got "
                f"{tuple(joint_q.shape)} and {tuple(joint_qd.shape)}."
            )
        self.joint_q = joint_q.to(self.device, torch.float32)
        self.joint_qd = joint_qd.to(self.device, torch.float32)
        self.obs_buf = self.observation(self.joint_q, self.joint_qd, self.actions)
        return self.obs_buf

    def rand_act(self) -> torch.Tensor:
        """Uniform random actions ``[N, A]`` in ``[-1, 1]``."""
        u = torch.rand((self.num_envs, self.num_actions), generator=self.generator, device=self.device)
        return 2.0 * u - 1.0

    def _uniform(self, *shape: int) -> torch.Tensor:
        """``U(-1, 1)`` samples of ``shape`` from the env's generator."""
        return 2.0 * torch.rand(shape, generator=self.generator, device=self.device) - 1.0

    def _start_states(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` start states ``(joint_q [n, Jq], joint_qd [n, Jqd])``."""
        q = self.start_joint_q.expand(n, -1).clone()
        qd = self.start_joint_qd.expand(n, -1).clone()
        return self.perturb(q, qd) if self.stochastic_init else (q, qd)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_envs={self.num_envs}, device={str(self.device)!r})"


class NewtonAnt(NewtonEnv):
    """dflex's Ant: a four-legged robot (free torso, 8 hinges) runs along ``+x``.

    Model: newton's ``nv_ant.xml`` with dflex's density 1000 for every geom, joint
    armature 0.05 on every dof, hinge damping 1, joint-limit stiffness/damping 1e3/10,
    ground contact ``ke = 4e4, kd = 1e4, kf = 3e3, mu = 0.75``; actions times 200 N m
    on the hinges. Start: torso at height 0.75 with identity orientation, hinges
    ``[0, 1, 0, -1, 0, -1, 0, 1]``; ``stochastic_init`` adds dflex's noise
    (``+-0.1`` m position, a rotation of up to ``pi/24`` about a random axis, ``+-0.2``
    rad on hinges, ``+-0.25`` on velocities).

    Observation ``[N, 37]``: torso height ``z`` (0), torso quaternion ``x, y, z, w``
    (1:5), torso centre-of-mass linear velocity (5:8) and angular velocity (8:11) in
    the world frame, hinge angles (11:19), 0.1 x hinge velocities (19:27), the z
    component of the torso's up axis (27), the cosine between the torso's heading
    (``x`` axis) and the horizontal direction to a target 10 km down ``+x`` (28), and
    the last actions (29:37). Reward: ``v_x + 0.1 up_z + heading + (height - 0.27)``
    (``primal = v_x``); termination when the torso height drops below 0.27.

    Differences from dflex: z-up world (dflex: y-up, so its quaternion includes a
    ``-pi/2`` start rotation about ``x`` and its velocities are ``(x, y_up, z)``); the
    velocity observation is newton's public free-joint velocity (centre-of-mass
    velocity, what dflex computed from its twist); hinge order and signs are
    ``nv_ant.xml``'s (dflex's ``ant.xml`` has the same layout).
    """

    num_obs = 37
    num_actions = 8
    action_strength = 200.0
    start_height = 0.75
    start_hinges = (0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)
    termination_height = 0.27
    up_rew_scale = 0.1
    action_penalty = 0.0
    joint_vel_obs_scaling = 0.1
    target_distance = 10000.0

    def build_model(self, num_envs: int, device: torch.device) -> Any:
        path = Path(newton.__file__).parent / "examples" / "assets" / "nv_ant.xml"
        robot = newton.ModelBuilder()
        robot.add_mjcf(_mjcf_text(path, geom_density=1000.0), parse_sites=False, parse_visuals=False)
        model = self.finalize(robot, num_envs, device)
        self.set_joint_gains(model, armature=0.05, hinge_damping=1.0)
        self.set_contact_material(model, ke=4.0e4, kd=1.0e4, kf=3.0e3, mu=0.75)
        return model

    def default_joint_q(self, imported: torch.Tensor) -> torch.Tensor:
        q = imported.clone()
        q[0:3] = torch.tensor([0.0, 0.0, self.start_height])
        q[3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0])
        q[7:15] = torch.tensor(self.start_hinges)
        return q

    def perturb(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = q.shape[0]
        pos = q[:, 0:3] + 0.1 * self._uniform(n, 3)
        angle = (math.pi / 24.0) * self._uniform(n, 1)
        axis = torch.nn.functional.normalize(self._uniform(n, 3), dim=-1)
        tilt = torch.cat([axis * torch.sin(0.5 * angle), torch.cos(0.5 * angle)], dim=-1)
        rot = quat_mul(q[:, 3:7], tilt)
        hinges = q[:, 7:] + 0.2 * self._uniform(n, q.shape[1] - 7)
        return torch.cat([pos, rot, hinges], dim=-1), qd + 0.25 * self._uniform(*qd.shape)

    def observation(self, q: torch.Tensor, qd: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        pos, rot = q[:, 0:3], q[:, 3:7]
        n = q.shape[0]
        up = quat_rotate(rot, q.new_tensor([0.0, 0.0, 1.0]).expand(n, 3))
        heading = quat_rotate(rot, q.new_tensor([1.0, 0.0, 0.0]).expand(n, 3))
        to_target = q.new_tensor([self.target_distance, 0.0]) - pos[:, 0:2]
        target_dir = torch.nn.functional.normalize(to_target, dim=-1)
        heading_proj = (heading[:, 0:2] * target_dir).sum(-1, keepdim=True)
        return torch.cat(
            [
                pos[:, 2:3],
                rot,
                qd[:, 0:3],
                qd[:, 3:6],
                q[:, 7:],
                self.joint_vel_obs_scaling * qd[:, 6:],
                up[:, 2:3],
                heading_proj,
                actions,
            ],
            dim=-1,
        )

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        progress = obs[:, 5]
        self.primal = progress.detach()
        return (
            progress
            + self.up_rew_scale * obs[:, 27]
            + obs[:, 28]
            + (obs[:, 0] - self.termination_height)
            + self.action_penalty * (actions**2).sum(-1)
        )

    def termination(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0] < self.termination_height


def gymnasium_hopper_xml() -> Path:
    """Path of Gymnasium's ``hopper.xml`` (Gymnasium is a core dependency of pwm_agent)."""
    import gymnasium

    return Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "hopper.xml"


class NewtonHopper(NewtonEnv):
    """dflex's Hopper: a planar one-legged robot (root slides ``x``, ``z`` and hinge ``y``;
    thigh, leg and foot hinges) hops along ``+x``.

    Model: Gymnasium's ``hopper.xml`` (density 1000, the MuJoCo default), joint armature 1
    on every dof, hinge damping 2, joint-limit stiffness/damping 1e3/10, ground contact
    ``ke = 2e4, kd = 2e3, kf = 1e3, mu = 0.9``; actions times 200 N m on the three hinges.
    Start: the upright pose of the file; ``stochastic_init`` adds dflex's noise
    (``+-0.05`` on the root position and angle and on the hinges, ``+-0.05`` on velocities).

    Observation ``[N, 11]``: the root height offset ``z - z_start`` (0), root pitch (1),
    thigh, leg, foot angles (2:5), then all six joint velocities (5:11; ``v_x`` at 5).
    Reward (dflex): ``v_x`` + height reward (``clip(h + 0.3, -1, 0.3)``, squared and
    scaled by -200 below zero) + ``1 - pitch^2 / (pi/6)^2`` ``- 0.1 |a|^2`` (``primal = v_x``);
    termination when the height offset drops below -0.45.

    Differences from dflex: z-up world and Gymnasium's joint-limit ranges in degrees
    (dflex read its file's ranges as radians); pitch is a rotation about ``y`` (dflex:
    about its ``z``), which only flips signs of the pitch entries.
    """

    num_obs = 11
    num_actions = 3
    action_strength = 200.0
    termination_height = -0.45
    termination_angle = math.pi / 6.0
    termination_height_tolerance = 0.15
    height_rew_scale = 1.0
    action_penalty = -0.1

    def build_model(self, num_envs: int, device: torch.device) -> Any:
        robot = newton.ModelBuilder()
        robot.add_mjcf(_mjcf_text(gymnasium_hopper_xml()), parse_sites=False, parse_visuals=False)
        model = self.finalize(robot, num_envs, device)
        dofs = model.joint_dof_count // num_envs
        if dofs != 6:
            raise RuntimeError(
                f"Gymnasium's hopper.xml imported with {dofs} dofs per env (expected 6: x, z, pitch and three "
                "hinges); this newton version imports it differently."
            )
        self.set_joint_gains(model, armature=1.0, hinge_damping=2.0)
        self.set_contact_material(model, ke=2.0e4, kd=2.0e3, kf=1.0e3, mu=0.9)
        return model

    def default_joint_q(self, imported: torch.Tensor) -> torch.Tensor:
        self.start_height_coord = float(imported[1])
        return imported

    def perturb(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q + 0.05 * self._uniform(*q.shape), qd + 0.05 * self._uniform(*qd.shape)

    def observation(self, q: torch.Tensor, qd: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.cat([q[:, 1:2] - self.start_height_coord, q[:, 2:], qd], dim=-1)

    def reward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        height = obs[:, 0] - (self.termination_height + self.termination_height_tolerance)
        height = torch.clip(height, -1.0, 0.3)
        height = torch.where(height < 0.0, -200.0 * height * height, self.height_rew_scale * height)
        angle = 1.0 - obs[:, 1] ** 2 / self.termination_angle**2
        progress = obs[:, 5]
        self.primal = progress.detach()
        return progress + height + angle + self.action_penalty * (actions**2).sum(-1)

    def termination(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, 0] < self.termination_height
