"""Differentiable control steps of a `newton <https://github.com/newton-physics/newton>`_ model.

:class:`NewtonSimulation` advances a batch of articulations (one per env, each a
copy of the same robot) by one *control* step: ``sim_substeps`` substeps of
newton's Featherstone solver (``newton.solvers.SolverFeatherstone``, the one
newton solver whose gradients match finite differences) with the joint forces
held fixed. :meth:`NewtonSimulation.step` takes and returns torch tensors and is
differentiable with respect to the start state and the joint forces: the forward
pass records a ``warp.Tape`` and the backward pass replays it.

Ground contact uses newton's penalty contact model (normal spring-damper and
regularised Coulomb friction, the model of dflex) between the ground plane
``z = 0`` and fixed contact candidates: the centre of every collision sphere and
both end centres of every capsule, each with the shape's radius as margin. For a
plane these candidates give the exact sphere and capsule distances, so no
collision detection runs during a step and the contact set is constant (which
keeps gradients well defined). Other collision shapes are not supported.

Memory: every recorded control step keeps its ``sim_substeps + 1`` solver states and
its mass matrices until its backward pass (or until its autograd graph is dropped);
the buffers then return to a pool that later steps reuse, so a SHAC horizon of ``H``
steps holds about ``H`` sets. Steps without gradients use two states.

``newton`` and ``warp`` are optional dependencies (``pip install "pwm_agent[newton]"``)
and are imported only when this module is imported.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

INSTALL_HINT = 'pip install "pwm_agent[newton]"'

try:  # newton and warp are an optional extra
    import newton
    import warp as wp
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"The newton-backed differentiable envs need the optional packages 'newton' and 'warp-lang' "
        f"({err}). Install them with: {INSTALL_HINT}"
    ) from err

# warp prints its banner and a line per kernel module it loads; a library must not
# write to stdout (set ``warp.config.quiet = False`` / ``log_level = warp.LOG_INFO`` to see them).
wp.config.quiet = True
wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)

__all__ = ["INSTALL_HINT", "NewtonSimulation", "ground_contacts", "warp_device"]


def warp_device(device: torch.device | str) -> Any:
    """The warp device that matches a torch device (``"cpu"`` or ``"cuda:i"``)."""
    return wp.device_from_torch(torch.device(device))


@contextlib.contextmanager
def _torch_stream(device: torch.device) -> Iterator[None]:
    """Run warp work on torch's current CUDA stream (no-op on the CPU), so the two
    libraries see each other's writes in order without extra synchronisation."""
    if device.type == "cuda":
        with wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(device))):
            yield
    else:
        yield


def ground_contacts(model: Any, radius_scale: float = 1.0) -> Any:
    """Fixed contact candidates between every collision sphere/capsule of ``model`` and
    the ground plane ``z = 0`` (a ``newton.Contacts`` with ``rigid_contact_count`` set).

    :param model: a finalized ``newton.Model`` (z-up).
    :param radius_scale: multiplier of the shape radii used as contact margins.
    :raises NotImplementedError: for a collision shape that is not a sphere or capsule.
    """
    shape_type = model.shape_type.numpy()
    shape_body = model.shape_body.numpy()
    shape_flags = model.shape_flags.numpy()
    shape_xform = model.shape_transform.numpy()
    shape_scale = model.shape_scale.numpy()
    collide = int(newton.ShapeFlags.COLLIDE_SHAPES)
    shapes: list[int] = []
    points: list[np.ndarray] = []
    margins: list[float] = []
    for s in range(model.shape_count):
        if shape_body[s] < 0 or not shape_flags[s] & collide:
            continue
        xform = wp.transform(wp.vec3(*shape_xform[s, :3]), wp.quat(*shape_xform[s, 3:7]))
        radius = float(shape_scale[s, 0]) * radius_scale
        if shape_type[s] == int(newton.GeoType.SPHERE):
            local = [(0.0, 0.0, 0.0)]
        elif shape_type[s] == int(newton.GeoType.CAPSULE):
            half = float(shape_scale[s, 1])
            local = [(0.0, 0.0, -half), (0.0, 0.0, half)]
        else:
            raise NotImplementedError(
                f"Shape {s} has type {newton.GeoType(int(shape_type[s])).name}; the newton envs' ground contacts "
                "support spheres and capsules only."
            )
        for p in local:
            points.append(np.asarray(wp.transform_point(xform, wp.vec3(*p)), dtype=np.float32))
            shapes.append(s)
            margins.append(radius)
    count = len(shapes)
    if count == 0:
        raise ValueError(
            "The model has no collision spheres or capsules attached to bodies; nothing touches the ground."
        )
    contacts = newton.Contacts(count, 0, device=model.device)
    contacts.rigid_contact_shape0.assign(np.asarray(shapes, dtype=np.int32))
    contacts.rigid_contact_shape1.assign(np.full(count, -1, dtype=np.int32))
    contacts.rigid_contact_point0.assign(np.stack(points))
    contacts.rigid_contact_point1.assign(np.zeros((count, 3), dtype=np.float32))
    # newton stores the normal from shape A (the body) to shape B (the ground): down.
    contacts.rigid_contact_normal.assign(np.tile(np.array([0.0, 0.0, -1.0], dtype=np.float32), (count, 1)))
    contacts.rigid_contact_margin0.assign(np.asarray(margins, dtype=np.float32))
    contacts.rigid_contact_margin1.assign(np.zeros(count, dtype=np.float32))
    contacts.rigid_contact_count.assign(np.array([count], dtype=np.int32))
    return contacts


@dataclass
class _MatrixSet:
    """Featherstone's system matrices (joint-space inertia ``H``, its Cholesky factor
    ``L`` and the intermediates ``M``, ``J``, ``P``) of one mass-matrix update."""

    M: Any
    J: Any
    P: Any
    H: Any
    L: Any


@dataclass
class _StepBuffers:
    """Every warp array one control step writes, kept until its backward pass."""

    states: list[Any]
    control: Any
    matrices: list[_MatrixSet]
    tape: Any = None
    in_use: bool = field(default=False)


class _Lease:
    """Hands a step's buffers back to the simulation's pool once its autograd node is
    done with them (after backward, or when the graph is discarded)."""

    def __init__(self, sim: NewtonSimulation, buffers: _StepBuffers) -> None:
        self.sim = sim
        self.buffers: _StepBuffers | None = buffers

    def release(self) -> None:
        if self.buffers is not None:
            self.sim._release(self.buffers)
            self.buffers = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.release()


class _NewtonStep(torch.autograd.Function):
    """One control step as an autograd node: ``(joint_q, joint_qd, joint_f) -> (joint_q', joint_qd')``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, sim: NewtonSimulation, joint_q: torch.Tensor, joint_qd: torch.Tensor, joint_f: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        buffers = sim._acquire()
        q_out, qd_out = sim._simulate(buffers, joint_q, joint_qd, joint_f, record=True)
        ctx.lease = _Lease(sim, buffers)
        return q_out, qd_out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_q: torch.Tensor, grad_qd: torch.Tensor
    ) -> tuple[None, torch.Tensor, torch.Tensor, torch.Tensor]:
        lease: _Lease = ctx.lease
        if lease.buffers is None:
            raise RuntimeError(
                "Backward through a newton control step ran twice; its warp tape is freed after the first "
                "backward. Call backward once per graph (retain_graph=True is not supported here)."
            )
        grads = lease.sim._backward(lease.buffers, grad_q, grad_qd)
        lease.release()
        return (None, *grads)


class NewtonSimulation:
    """A batch of identical articulations advanced by newton's Featherstone solver.

    :param model: a finalized ``newton.Model`` holding ``num_envs`` copies of one
        articulation (all on the torch ``device``).
    :param num_envs: number of copies ``N``.
    :param device: torch device of the tensors passed to :meth:`step`.
    :param dt: control step in seconds.
    :param sim_substeps: solver substeps per control step (each ``dt / sim_substeps``).
    :param mass_matrix_interval: recompute the joint-space mass matrix every this many
        substeps, counted from the start of each control step (so it is always fresh at
        the first substep; ``>= sim_substeps``: once per control step, dflex's default of
        16). Gradients are exact for the dynamics simulated, frozen mass matrix included.
    :param contacts: contact candidates (default: :func:`ground_contacts` of ``model``).
    :param angular_damping: the solver's angular damping of free bodies.
    """

    def __init__(
        self,
        model: Any,
        num_envs: int,
        device: torch.device | str,
        dt: float,
        sim_substeps: int,
        mass_matrix_interval: int | None = None,
        contacts: Any = None,
        angular_damping: float = 0.0,
    ) -> None:
        if sim_substeps < 1:
            raise ValueError(f"sim_substeps must be >= 1, got {sim_substeps}.")
        interval = sim_substeps if mass_matrix_interval is None else int(mass_matrix_interval)
        if interval < 1:
            raise ValueError(f"mass_matrix_interval must be >= 1 substep, got {mass_matrix_interval}.")
        if model.joint_coord_count % num_envs or model.joint_dof_count % num_envs:
            raise ValueError(f"The model's joints do not split into {num_envs} identical envs.")
        self.model = model
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.dt = float(dt)
        self.sim_substeps = int(sim_substeps)
        self.mass_matrix_interval = min(interval, self.sim_substeps)
        self.coords_per_env = model.joint_coord_count // num_envs
        self.dofs_per_env = model.joint_dof_count // num_envs
        self.contacts = ground_contacts(model) if contacts is None else contacts
        self.solver = newton.solvers.SolverFeatherstone(
            model, angular_damping=angular_damping, update_mass_matrix_interval=self.mass_matrix_interval
        )
        self._solver_matrices = _MatrixSet(self.solver.M, self.solver.J, self.solver.P, self.solver.H, self.solver.L)
        self._pool: list[_StepBuffers] = []
        self._lock = threading.Lock()
        self._plain = _StepBuffers(
            states=[model.state(requires_grad=False), model.state(requires_grad=False)],
            control=model.control(requires_grad=False),
            matrices=[self._solver_matrices],
        )

    # ----------------------------------------------------------------- public
    @property
    def updates_per_step(self) -> int:
        """Mass-matrix updates in one control step."""
        return -(-self.sim_substeps // self.mass_matrix_interval)

    def step(
        self, joint_q: torch.Tensor, joint_qd: torch.Tensor, joint_f: torch.Tensor, no_grad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one control step.

        :param joint_q: joint coordinates ``[N * Jq]`` (or ``[N, Jq]``).
        :param joint_qd: joint velocities ``[N * Jqd]`` (or ``[N, Jqd]``).
        :param joint_f: generalised joint forces held during the step ``[N * Jqd]`` (or ``[N, Jqd]``).
        :param no_grad: never record gradients (dflex's ``no_grad``).
        :return: ``(joint_q', joint_qd')`` of shapes ``[N * Jq]`` and ``[N * Jqd]``, float32 on
            ``device``; differentiable when grad mode is on, ``no_grad`` is false and an input
            requires grad.
        """
        q, qd, f = (self._flat(t, n) for t, n in ((joint_q, "joint_q"), (joint_qd, "joint_qd"), (joint_f, "joint_f")))
        record = torch.is_grad_enabled() and not no_grad and any(t.requires_grad for t in (q, qd, f))
        if record:
            return _NewtonStep.apply(self, q, qd, f)
        return self._simulate(self._plain, q, qd, f, record=False)

    # --------------------------------------------------------------- internals
    def _flat(self, t: torch.Tensor, name: str) -> torch.Tensor:
        size = self.model.joint_coord_count if name == "joint_q" else self.model.joint_dof_count
        t = torch.as_tensor(t, device=self.device)
        if t.numel() != size:
            raise ValueError(f"{name} needs {size} values ({self.num_envs} envs), got shape {tuple(t.shape)}.")
        return t.reshape(size).to(torch.float32).contiguous()

    def _new_buffers(self) -> _StepBuffers:
        model = self.model
        states = [model.state(requires_grad=True) for _ in range(self.sim_substeps + 1)]
        matrices = [
            _MatrixSet(*(wp.zeros_like(getattr(self.solver, name), requires_grad=True) for name in "MJPHL"))
            for _ in range(self.updates_per_step)
        ]
        return _StepBuffers(states=states, control=model.control(requires_grad=True), matrices=matrices, tape=wp.Tape())

    def _acquire(self) -> _StepBuffers:
        with self._lock:
            buffers = self._pool.pop() if self._pool else None
        if buffers is None:
            buffers = self._new_buffers()
        buffers.in_use = True
        return buffers

    def _release(self, buffers: _StepBuffers) -> None:
        if not buffers.in_use:
            return
        with _torch_stream(self.device):
            buffers.tape.reset()  # drop the recorded launches and zero every gradient
        buffers.in_use = False
        with self._lock:
            self._pool.append(buffers)

    def _bind_matrices(self, matrices: _MatrixSet) -> None:
        s = self.solver
        s.M, s.J, s.P, s.H, s.L = matrices.M, matrices.J, matrices.P, matrices.H, matrices.L

    def _simulate(
        self, buffers: _StepBuffers, q: torch.Tensor, qd: torch.Tensor, f: torch.Tensor, record: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the substeps on ``buffers`` (recording its tape when ``record``); returns copies
        of the final ``joint_q [N * Jq]`` and ``joint_qd [N * Jqd]``."""
        states, control = buffers.states, buffers.control
        h = self.dt / self.sim_substeps
        with _torch_stream(self.device), torch.no_grad():
            wp.copy(states[0].joint_q, wp.from_torch(q.detach()))
            wp.copy(states[0].joint_qd, wp.from_torch(qd.detach()))
            wp.copy(control.joint_f, wp.from_torch(f.detach()))
            scope = buffers.tape if record else contextlib.nullcontext()
            with scope:
                for i in range(self.sim_substeps):
                    if i % self.mass_matrix_interval == 0:
                        update = min(i // self.mass_matrix_interval, len(buffers.matrices) - 1)
                        self._bind_matrices(buffers.matrices[update])
                        self.solver._step = 0  # recompute the mass matrix in this substep
                    else:
                        self.solver._step = 1  # reuse it (interval >= 2 here)
                    src, dst = (states[i], states[i + 1]) if record else (states[i % 2], states[(i + 1) % 2])
                    self.solver.step(src, dst, control, self.contacts, h)
            last = states[-1] if record else states[self.sim_substeps % 2]
            q_out = wp.to_torch(last.joint_q, requires_grad=False).clone()
            qd_out = wp.to_torch(last.joint_qd, requires_grad=False).clone()
        self._bind_matrices(self._solver_matrices)
        return q_out, qd_out

    def _backward(
        self, buffers: _StepBuffers, grad_q: torch.Tensor, grad_qd: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradients of the start state and forces ``([N * Jq], [N * Jqd], [N * Jqd])`` from
        the gradients of the final state."""
        states, control = buffers.states, buffers.control
        with _torch_stream(self.device), torch.no_grad():
            last = states[-1]
            wp.copy(last.joint_q.grad, wp.from_torch(grad_q.detach().to(torch.float32).contiguous()))
            wp.copy(last.joint_qd.grad, wp.from_torch(grad_qd.detach().to(torch.float32).contiguous()))
            buffers.tape.backward()
            first = states[0]
            return (
                wp.to_torch(first.joint_q.grad, requires_grad=False).clone(),
                wp.to_torch(first.joint_qd.grad, requires_grad=False).clone(),
                wp.to_torch(control.joint_f.grad, requires_grad=False).clone(),
            )

    def __repr__(self) -> str:
        return (
            f"NewtonSimulation(num_envs={self.num_envs}, device={str(self.device)!r}, dt={self.dt}, "
            f"sim_substeps={self.sim_substeps}, mass_matrix_interval={self.mass_matrix_interval})"
        )
