"""Built-in differentiable simulators: physics, gradients, the dflex interface, Gymnasium views."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from pwm_agent.envs import GymnasiumVecEnv
from pwm_agent.envs.diffsim import (
    CartPoleSwingUp,
    DiffSimVectorEnv,
    DoublePendulum,
    check_differentiable_env,
    make_diffsim,
)
from pwm_agent.envs.diffsim.tasks import ARMATURE, GRAVITY, POLE_COM, POLE_INERTIA, POLE_LENGTH, POLE_MASS

TASKS = [CartPoleSwingUp, DoublePendulum]


def _cartpole_energy(q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kinetic and potential energy written from body positions (independent of the env's equations)."""
    th, xd, thd = q[1], qd[0], qd[1]
    com_vx = xd + POLE_COM * torch.cos(th) * thd
    com_vy = -POLE_COM * torch.sin(th) * thd
    kinetic = 0.5 * CartPoleSwingUp.cart_mass * xd**2 + 0.5 * POLE_MASS * (com_vx**2 + com_vy**2)
    kinetic = kinetic + 0.5 * POLE_INERTIA * thd**2 + 0.5 * ARMATURE * (xd**2 + thd**2)
    return kinetic, POLE_MASS * GRAVITY * POLE_COM * torch.cos(th)


def _acrobot_energy(q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a1, a2 = q[0], q[0] + q[1]
    w1, w2 = qd[0], qd[0] + qd[1]
    v1 = POLE_COM * w1
    # Velocity of link 2's centre: elbow velocity plus rotation about the elbow.
    vx = POLE_LENGTH * torch.cos(a1) * w1 + POLE_COM * torch.cos(a2) * w2
    vy = -POLE_LENGTH * torch.sin(a1) * w1 - POLE_COM * torch.sin(a2) * w2
    kinetic = 0.5 * POLE_MASS * (v1**2 + vx**2 + vy**2) + 0.5 * POLE_INERTIA * (w1**2 + w2**2)
    kinetic = kinetic + 0.5 * ARMATURE * (qd[0] ** 2 + qd[1] ** 2)
    height = POLE_COM * torch.cos(a1) * POLE_MASS + (POLE_LENGTH * torch.cos(a1) + POLE_COM * torch.cos(a2)) * POLE_MASS
    return kinetic, GRAVITY * height


ENERGY = {CartPoleSwingUp: _cartpole_energy, DoublePendulum: _acrobot_energy}
DRIVEN_JOINT = {CartPoleSwingUp: 0, DoublePendulum: 1}


def _lagrangian_accelerations(cls: type, q: torch.Tensor, qd: torch.Tensor, force: float) -> torch.Tensor:
    """Solve the Euler-Lagrange equations of the energies above with autograd."""
    energy = ENERGY[cls]

    def lagrangian(q_: torch.Tensor, qd_: torch.Tensor) -> torch.Tensor:
        kinetic, potential = energy(q_, qd_)
        return kinetic - potential

    mass = torch.autograd.functional.hessian(lambda v: lagrangian(q, v), qd)
    dl_dqd = lambda q_: torch.autograd.functional.jacobian(lambda v: lagrangian(q_, v), qd, create_graph=True)
    mixed = torch.autograd.functional.jacobian(dl_dqd, q)  # d/dq (dL/dqd): [J, J]
    dl_dq = torch.autograd.functional.jacobian(lambda v: lagrangian(v, qd), q)
    generalised = torch.zeros_like(q)
    generalised[DRIVEN_JOINT[cls]] = force
    return torch.linalg.solve(mass, generalised + dl_dq - mixed @ qd)


@pytest.mark.parametrize("cls", TASKS)
def test_equations_of_motion_match_the_lagrangian(cls: type) -> None:
    env = cls(num_envs=1, dtype=torch.float64, stochastic_init=False)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        q = (torch.rand(2, generator=gen, dtype=torch.float64) - 0.5) * 4
        q[0] = q[0].clamp(-3.5, 3.5)  # inside the cart's rail limits
        qd = (torch.rand(2, generator=gen, dtype=torch.float64) - 0.5) * 6
        force = 37.0
        expected = _lagrangian_accelerations(cls, q, qd, force)
        got = env.accelerations(q[None], qd[None], torch.tensor([[force]], dtype=torch.float64))[0]
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", TASKS)
def test_energy_is_nearly_conserved_without_actions(cls: type) -> None:
    env = cls(num_envs=1, dtype=torch.float64, stochastic_init=False, start_state=(0.0, 2.0, 0.0, 0.0))
    q, qd = env.get_state()
    start = sum(ENERGY[cls](q[0], qd[0]))
    scale = POLE_MASS * GRAVITY * POLE_LENGTH * 2
    for _ in range(120):
        env.step(torch.zeros(1, 1, dtype=torch.float64))
    q, qd = env.get_state()
    drift = abs(float(sum(ENERGY[cls](q[0], qd[0])) - start))
    # Semi-implicit Euler keeps the energy error bounded (a sign error would blow it up).
    assert drift < 0.05 * scale, f"energy drifted by {drift:.3f} J over 2 s"


def _rollout_loss(env, q0, qd0, actions):
    env.set_state(q0, qd0)
    total = 0.0
    for a in actions:
        _, rew, _, extras = env.step(a)
        total = total + rew.sum() + extras["obs_before_reset"].square().sum() * 0.1
    return total


@pytest.mark.parametrize("cls", TASKS)
def test_gradients_through_a_rollout_match_finite_differences(cls: type) -> None:
    """Target of the issue: within 5% of central differences on a 6-step rollout."""
    env = cls(num_envs=4, dtype=torch.float64, stochastic_init=False)
    gen = torch.Generator().manual_seed(1)
    q0 = (torch.rand(4, 2, generator=gen, dtype=torch.float64) - 0.5) * 2.0
    qd0 = (torch.rand(4, 2, generator=gen, dtype=torch.float64) - 0.5) * 2.0
    actions = ((torch.rand(6, 4, 1, generator=gen, dtype=torch.float64) - 0.5) * 0.4).requires_grad_(True)
    q0.requires_grad_(True)
    loss = _rollout_loss(env, q0, qd0, actions)
    grad_a, grad_q = torch.autograd.grad(loss, (actions, q0))
    eps = 1e-6
    for param, grad in ((actions, grad_a), (q0, grad_q)):
        fd = torch.zeros_like(param)
        flat = fd.view(-1)
        for i in range(param.numel()):
            with torch.no_grad():
                plus, minus = param.detach().clone(), param.detach().clone()
                plus.view(-1)[i] += eps
                minus.view(-1)[i] -= eps
                args_p = (plus, qd0, actions.detach()) if param is q0 else (q0.detach(), qd0, plus)
                args_m = (minus, qd0, actions.detach()) if param is q0 else (q0.detach(), qd0, minus)
                flat[i] = (_rollout_loss(env, *args_p) - _rollout_loss(env, *args_m)) / (2 * eps)
        rel = float((grad - fd).norm() / fd.norm())
        assert rel < 0.05, f"{cls.__name__}: autograd vs finite differences differ by {rel:.2%}"
        assert float((grad - fd).abs().max()) < 1e-4 * max(1.0, float(fd.abs().max()))


def test_step_follows_the_dflex_interface() -> None:
    env = CartPoleSwingUp(num_envs=3, episode_length=5, seed=0)
    check_differentiable_env(env)
    obs = env.reset()
    assert obs.shape == (3, 5) and env.num_acts == 1 and env.max_episode_steps == 5
    actions = torch.full((3, 1), 3.0)  # clipped to 1
    expected_reward = env.reward(obs, torch.ones(3, 1))
    obs1, rew, done, extras = env.step(actions)
    torch.testing.assert_close(rew, expected_reward)  # r_t = f(o_t, a_t)
    assert set(extras) >= {"obs_before_reset", "termination", "truncation", "primal"}
    assert not done.any()
    for _ in range(3):
        env.step(torch.zeros(3, 1))
    before = env.obs_buf.clone()
    obs5, _, done, extras = env.step(torch.zeros(3, 1))
    assert done.all() and extras["truncation"].all() and not extras["termination"].any()
    assert not torch.allclose(extras["obs_before_reset"], obs5)  # reset inside step
    assert (env.progress_buf == 0).all()
    del before


def test_no_gradient_flows_across_a_reset_inside_step() -> None:
    env = CartPoleSwingUp(num_envs=2, episode_length=2, seed=0)
    first = torch.zeros(2, 1, requires_grad=True)
    env.step(first)
    obs, _, done, extras = env.step(torch.zeros(2, 1))
    assert done.all()
    (grad_reset,) = torch.autograd.grad(obs.sum(), first, allow_unused=True, retain_graph=True)
    assert grad_reset is None or torch.count_nonzero(grad_reset) == 0
    (grad_reached,) = torch.autograd.grad(extras["obs_before_reset"].sum(), first)
    assert torch.count_nonzero(grad_reached) > 0


def test_partial_reset_keeps_the_other_envs_graph() -> None:
    env = CartPoleSwingUp(num_envs=3, seed=0)
    action = torch.zeros(3, 1, requires_grad=True)
    env.step(action)
    obs = env.reset(torch.tensor([False, True, False]))  # a bool mask works like indices [1]
    assert int(env.progress_buf[1]) == 0 and int(env.progress_buf[0]) == 1
    (grad,) = torch.autograd.grad(obs[[0, 2]].sum() + obs[1].sum(), action)
    assert torch.count_nonzero(grad[[0, 2]]) > 0 and torch.count_nonzero(grad[1]) == 0


def test_reset_with_grads_cuts_the_graph_without_resetting() -> None:
    env = CartPoleSwingUp(num_envs=2, seed=0)
    env.reset()
    action = torch.zeros(2, 1, requires_grad=True)
    obs, _, _, _ = env.step(action)
    assert obs.requires_grad
    cut = env.reset(grads=True)
    torch.testing.assert_close(cut, obs.detach())
    assert not cut.requires_grad and int(env.progress_buf[0]) == 1


def test_no_grad_env_is_refused_for_differentiation() -> None:
    with pytest.raises(ValueError, match="no_grad=False"):
        check_differentiable_env(CartPoleSwingUp(num_envs=1, no_grad=True))
    with pytest.raises(TypeError, match="differentiable env"):
        check_differentiable_env(gym.make("Pendulum-v1"))


def test_seeded_start_states_are_reproducible_and_bad_arguments_raise() -> None:
    a, b = CartPoleSwingUp(num_envs=4, seed=3), CartPoleSwingUp(num_envs=4, seed=3)
    torch.testing.assert_close(a.reset(), b.reset())
    theta = torch.atan2(a.obs_buf[:, 2], a.obs_buf[:, 3]).abs()
    assert (theta > math.pi / 2 - 1e-6).all()  # hanging down, +-pi/2 of noise
    with pytest.raises(ValueError, match="start_state needs 4"):
        CartPoleSwingUp(start_state=(0.0, 1.0))
    with pytest.raises(ValueError, match="Unknown differentiable task"):
        make_diffsim("Humanoid")


@pytest.mark.parametrize("env_id", ["pwm_agent/CartPoleSwingUp-v0", "pwm_agent/DoublePendulum-v0"])
def test_gymnasium_envs_pass_the_checkers(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    venv = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", episode_length=4)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, env.observation_space.shape[0])
    for _ in range(3):
        venv.step(venv.action_space.sample())
    obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
    assert trunc.all() and not term.any() and info["_final_obs"].all()
    assert rew.shape == (3,) and np.isfinite(rew).all()


def test_single_env_episode_ends_with_truncation() -> None:
    env = gym.make("pwm_agent/CartPoleSwingUp-v0", episode_length=3)
    env.reset(seed=1)
    flags = [env.step(np.zeros(1, dtype=np.float32))[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_sb3_vecenv_view_has_terminal_observations() -> None:
    venv = GymnasiumVecEnv(DiffSimVectorEnv("CartPoleSwingUp", num_envs=2, episode_length=2))
    venv.seed(0)
    venv.reset()
    venv.step(np.zeros((2, 1), dtype=np.float32))
    _, _, dones, infos = venv.step(np.zeros((2, 1), dtype=np.float32))
    assert dones.all() and all(info["TimeLimit.truncated"] for info in infos)
    assert infos[0]["terminal_observation"].shape == (5,)


def test_bouncing_ball_contacts_push_back_and_stiffen_gradients() -> None:
    from pwm_agent.envs.diffsim import BouncingBall

    def throw(stiffness: float, angles: torch.Tensor) -> tuple[torch.Tensor, BouncingBall]:
        env = BouncingBall(contact_stiffness=stiffness, num_envs=angles.shape[0], dtype=torch.float64)
        q = torch.stack([torch.zeros_like(angles), torch.ones_like(angles)], -1)
        env.set_state(q, BouncingBall.launch_speed * torch.stack([torch.cos(angles), torch.sin(angles)], -1))
        total = torch.zeros_like(angles)
        for _ in range(env.episode_length):
            _, rew, _, extras = env.step(torch.zeros(angles.shape[0], 1, dtype=torch.float64))
            total = total + rew
            assert (extras["obs_before_reset"][:, 0] < BouncingBall.wall_x + 0.3).all()  # the wall holds (soft: ~0.2 m deep)
            assert (extras["obs_before_reset"][:, 1] > -0.3).all()  # so does the ground
        return total, env

    angles = torch.linspace(-1.0, 1.0, 64, dtype=torch.float64, requires_grad=True)
    soft, _ = throw(1e3, angles)
    (g_soft,) = torch.autograd.grad(soft.sum(), angles)
    stiff, _ = throw(1e5, angles)
    (g_stiff,) = torch.autograd.grad(stiff.sum(), angles)
    assert float(g_stiff.var()) > 100 * float(g_soft.var())
    # Soft contacts: gradients agree with finite differences.
    probe = torch.tensor([0.3, -0.4], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(throw(1e3, probe)[0].sum(), probe)
    with torch.no_grad():
        eps = 1e-6
        fd = (throw(1e3, probe + eps)[0] - throw(1e3, probe - eps)[0]) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=0.05, atol=1e-6)


def test_gymnasium_views_refuse_conflicting_arguments() -> None:
    with pytest.raises(TypeError, match="without gradients"):
        gym.make("pwm_agent/CartPoleSwingUp-v0", no_grad=False)
    with pytest.raises(TypeError, match="never records gradients"):
        DiffSimVectorEnv("CartPoleSwingUp", num_envs=2, no_grad=False)
