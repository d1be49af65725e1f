"""newton-backed differentiable envs: the dflex interface and gradients against finite differences.

Skipped unless the optional extra is installed (``pip install "pwm_agent[newton]"``).
"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

pytest.importorskip("newton")
pytest.importorskip("warp")

from pwm_agent.envs.diffsim.newton_tasks import NewtonAnt, NewtonEnv, NewtonHopper

NUM_ENVS = 3


@pytest.fixture(scope="module", params=[NewtonAnt, NewtonHopper], ids=["ant", "hopper"])
def env(request: pytest.FixtureRequest) -> NewtonEnv:
    """One small env per task for the whole module (warp compiles its kernels once)."""
    return request.param(num_envs=NUM_ENVS, stochastic_init=False, seed=0)


def _airborne_state(env: NewtonEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """A start state high above the ground with hinges inside their limits, so a few
    control steps touch neither the ground nor a joint limit (a smooth problem)."""
    q, qd = env.get_state()
    q[:] = env.start_joint_q
    qd.zero_()
    if isinstance(env, NewtonAnt):
        q[:, 2] = 1.5
    else:
        q[:, 1] = env.start_height_coord + 0.6
        q[:, 3:6] = torch.tensor([-0.4, -0.4, 0.1])  # thigh, leg (limits -150..0 deg), foot
    gen = torch.Generator().manual_seed(1)
    qd[:, -env.num_actions :] = 0.5 * torch.randn(NUM_ENVS, env.num_actions, generator=gen)
    return q, qd


def test_interface_shapes(env: NewtonEnv) -> None:
    obs = env.reset()
    n, o, a = env.num_envs, env.num_obs, env.num_actions
    assert obs.shape == (n, o) and obs.dtype == torch.float32
    assert env.num_acts == a and env.observation_space.shape == (o,) and env.action_space.shape == (a,)
    assert env.max_episode_steps == env.episode_length == 1000
    with torch.no_grad():
        obs, rew, done, extras = env.step(2.0 * torch.ones(n, a))  # clipped to 1
    assert obs.shape == (n, o) and rew.shape == (n,) and done.shape == (n,) and done.dtype == torch.bool
    assert {"obs_before_reset", "termination", "truncation", "primal"} <= set(extras)
    assert extras["obs_before_reset"].shape == (n, o)
    assert torch.isfinite(obs).all() and torch.isfinite(rew).all()
    if isinstance(env, NewtonAnt):
        assert torch.allclose(extras["obs_before_reset"][:, 29:37], torch.ones(n, a))  # last (clipped) actions


def test_reset_inside_step(env: NewtonEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Env 0 is lifted into the air, env 1 stands below a raised termination height and
    env 2 is lifted and reaches the time limit: envs 1 and 2 are reset inside ``step``."""
    start = env.reset()
    height = 2 if isinstance(env, NewtonAnt) else 1  # index of the root's vertical coordinate
    monkeypatch.setattr(env, "termination_height", float(start[0, 0]) + 0.25)
    q, qd = env.get_state()
    q[[0, 2], height] += 0.5
    env.set_state(q, qd)
    env.progress_buf[2] = env.episode_length - 1
    with torch.no_grad():
        obs, _, done, extras = env.step(torch.zeros(env.num_envs, env.num_actions))
    assert extras["termination"].tolist() == [False, True, False]
    assert extras["truncation"].tolist() == [False, False, True]
    assert done.tolist() == [False, True, True]
    for i in (1, 2):
        torch.testing.assert_close(obs[i], start[i])  # back at the start state
        assert not torch.equal(extras["obs_before_reset"][i], start[i])
    torch.testing.assert_close(obs[0], extras["obs_before_reset"][0])
    assert env.progress_buf.tolist() == [1, 0, 0]


def test_grads_flow_and_reset_grads_cuts(env: NewtonEnv) -> None:
    env.reset()
    actions = torch.zeros(env.num_envs, env.num_actions, requires_grad=True)
    env.step(actions)
    obs2, rew2, _, _ = env.step(torch.zeros(env.num_envs, env.num_actions))
    assert obs2.requires_grad and rew2.requires_grad
    (grad,) = torch.autograd.grad(rew2.sum(), actions)  # through the physics only
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    cut = env.reset(grads=True)
    assert not cut.requires_grad and cut.grad_fn is None
    torch.testing.assert_close(cut, env.obs_buf)
    obs3, _, _, _ = env.step(torch.zeros(env.num_envs, env.num_actions, requires_grad=True))
    with pytest.raises(RuntimeError):  # nothing connects the new step to the old actions
        torch.autograd.grad(obs3.sum(), actions)
    with torch.no_grad():
        obs4, *_ = env.step(torch.zeros(env.num_envs, env.num_actions, requires_grad=True))
    assert not obs4.requires_grad


def test_no_grad_env_records_nothing() -> None:
    env = NewtonHopper(num_envs=2, no_grad=True, stochastic_init=True, seed=3)
    obs, rew, _, _ = env.step(torch.zeros(2, 3, requires_grad=True))
    assert not obs.requires_grad and not rew.requires_grad
    assert torch.isfinite(obs).all()


def _rollout_loss(
    env: NewtonEnv, q0: torch.Tensor, qd0: torch.Tensor, actions: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    """``sum_t w . obs_t`` over a short rollout from ``(q0, qd0)`` with ``actions [T, N, A]``."""
    env.reset()
    env.set_state(q0, qd0)
    loss = q0.new_zeros(())
    for t in range(actions.shape[0]):
        _, _, done, extras = env.step(actions[t])
        assert not done.any()
        loss = loss + (extras["obs_before_reset"] * w).sum()
    return loss


def _fd_check(env: NewtonEnv, wrt: str, steps: int = 6, eps: float = 1e-2) -> tuple[float, float, float]:
    """Directional derivative of a ``steps``-step rollout loss along a random direction of the
    actions or of the hinge velocities: ``(autograd, central FD, relative error)``."""
    gen = torch.Generator().manual_seed(2)
    q0, qd0 = _airborne_state(env)
    actions = 0.5 * torch.randn(steps, NUM_ENVS, env.num_actions, generator=gen).clamp(-1.5, 1.5) / 1.5
    w = torch.randn(env.num_obs, generator=gen)
    if wrt == "actions":
        x0, direction = actions, torch.randn(actions.shape, generator=gen)

        def loss_of(x: torch.Tensor) -> torch.Tensor:
            return _rollout_loss(env, q0, qd0, x, w)

    else:
        x0, direction = qd0, torch.zeros_like(qd0)
        direction[:, -env.num_actions :] = torch.randn(NUM_ENVS, env.num_actions, generator=gen)

        def loss_of(x: torch.Tensor) -> torch.Tensor:
            return _rollout_loss(env, q0, x, actions, w)

    x = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(x), x)
    analytic = float((grad * direction).sum())
    with torch.no_grad():
        numeric = float((loss_of(x0 + eps * direction) - loss_of(x0 - eps * direction)) / (2 * eps))
    return analytic, numeric, abs(analytic - numeric) / max(abs(numeric), 1e-3)


@pytest.mark.parametrize("wrt", ["actions", "velocities"])
def test_gradient_matches_finite_differences(env: NewtonEnv, wrt: str) -> None:
    """Autograd through warp's tape vs central differences (float32 physics, 16 substeps per
    step, 6 steps (the issue's target), no contact or joint-limit changes: a smooth problem)."""
    analytic, numeric, rel = _fd_check(env, wrt)
    name = type(env).__name__
    assert rel < 0.05, f"{name} d/d{wrt}: autograd {analytic:.6g} vs central FD {numeric:.6g} (rel {rel:.3g})"


def test_gradient_with_several_mass_matrix_updates_per_step() -> None:
    """Four mass-matrix updates per control step: each gets its own recorded matrices."""
    env = NewtonAnt(num_envs=NUM_ENVS, stochastic_init=False, mass_matrix_interval=4)
    assert env.sim.updates_per_step == 4
    analytic, numeric, rel = _fd_check(env, "actions")
    assert rel < 0.05, f"autograd {analytic:.6g} vs central FD {numeric:.6g} (rel {rel:.3g})"


def test_mass_matrix_interval_changes_little() -> None:
    """Updating the mass matrix every substep or once per control step gives nearby states."""
    states = []
    for interval in (1, 16):
        env = NewtonAnt(num_envs=2, stochastic_init=False, mass_matrix_interval=interval)
        assert env.sim.mass_matrix_interval == interval
        with torch.no_grad():
            for _ in range(3):
                env.step(torch.full((2, 8), 0.5))
        states.append(env.get_state()[0])
    torch.testing.assert_close(states[0], states[1], atol=2e-2, rtol=0.0)


def test_missing_newton_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pwm_agent.envs.diffsim.newton_backend", "pwm_agent.envs.diffsim.newton_tasks"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "newton", None)
    with pytest.raises(ImportError, match=r'pip install "pwm_agent\[newton\]"'):
        importlib.import_module("pwm_agent.envs.diffsim.newton_tasks")



def test_shac_trains_through_newton_and_make_diffsim_builds_by_name() -> None:
    from pwm_agent.envs.diffsim import make_diffsim
    from pwm_agent.shac import SHAC

    env = make_diffsim("NewtonHopper", num_envs=2, seed=0)
    agent = SHAC("MlpPolicy", env, horizon=3, critic_iterations=1, seed=0,
                 policy_kwargs=dict(actor_arch=[16], critic_arch=[16]))
    before = [p.detach().clone() for p in agent.policy.actor.parameters()]
    agent.learn(12)  # two epochs of 3 steps x 2 envs
    assert agent.num_timesteps == 12
    assert any(not torch.equal(a, p) for a, p in zip(before, agent.policy.actor.parameters()))
