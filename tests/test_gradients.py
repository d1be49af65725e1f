"""Which parameters each update moves, return/target formulas and the critic ensemble."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pwm_agent import PWM
from pwm_agent.networks import Actor, CriticEnsemble
from pwm_agent.objectives import discounted_return, imagine, td_lambda_targets
from pwm_agent.pwm.checks import check_compiler
from pwm_agent.world_model.layers import Mish

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def filled() -> PWM:
    """A tiny agent with 60 stored Pendulum steps and no update yet."""
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(learning_starts=60))
    model.learn(60)
    assert model._n_updates == 0
    return model


@pytest.fixture
def agent(filled: PWM) -> PWM:
    """A fresh copy of ``filled``'s networks and optimisers, to be mutated by one test."""
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(learning_starts=60))
    model.policy.load_state_dict(filled.policy.state_dict())
    model.replay_buffer = filled.replay_buffer
    return model


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(module: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, p in module.named_parameters() if not torch.equal(p.detach(), before[name])]


def parts(model: PWM) -> dict[str, nn.Module]:
    policy = model.policy
    return {"actor": policy.actor, "critic": policy.critic, "world_model": policy.world_model}


def run_and_diff(model: PWM, fn) -> dict[str, list[str]]:
    before = {key: snapshot(module) for key, module in parts(model).items()}
    fn()
    return {key: changed(module, before[key]) for key, module in parts(model).items()}


def sample(model: PWM):
    torch.manual_seed(0)
    return model.replay_buffer.sample_windows(model.batch_size, model.horizon)


# --------------------------------------------------------------------------- gradient separation
def test_train_actor_moves_only_the_actor(agent):
    updater, batch = agent.updater, sample(agent)
    result = {}

    def step():
        result["imagination"], result["metrics"] = updater.train_actor(batch.observations[0])

    diff = run_and_diff(agent, step)
    assert diff["world_model"] == [] and diff["critic"] == []
    assert set(diff["actor"]) == {name for name, _ in agent.policy.actor.named_parameters()}
    # No gradient was even written into the world model or critics.
    for module in (agent.policy.world_model, agent.policy.critic):
        assert all(p.grad is None for p in module.parameters())
    assert result["metrics"]["actor_grad_norm"] > 0
    imagination = result["imagination"]
    assert imagination.latents.shape == (agent.horizon + 1, agent.batch_size, 16)
    assert not imagination.latents.requires_grad and not imagination.rewards.requires_grad


def test_behavior_cloning_term_pulls_actions_to_the_data_and_moves_only_the_actor(agent):
    from dataclasses import replace

    updater, batch = agent.updater, sample(agent)
    updater.config = replace(updater.config, bc_coef=50.0)  # the cloning term dominates the loss
    for group in updater.actor_optimizer.param_groups:
        group["lr"] = 1e-2
    target = torch.full_like(batch.actions[0], 0.5)
    with torch.no_grad():
        z0 = agent.policy.world_model.encode(batch.observations[0])
        start = (agent.policy.actor.mean_action(z0) - target).square().sum(-1).mean()
    losses = []

    def steps():
        for _ in range(30):
            losses.append(updater.train_actor(batch.observations[0], target)[1]["bc_loss"])

    diff = run_and_diff(agent, steps)
    assert diff["world_model"] == [] and diff["critic"] == []
    assert torch.isclose(losses[0], start)
    assert losses[-1] < 0.5 * start
    # Without behaviour actions (the online default) the term is absent.
    assert "bc_loss" not in updater.train_actor(batch.observations[0])[1]


def test_actor_gradient_flows_through_the_world_model(agent):
    """The imagined reward depends on the actions, so the actor gets a gradient through the model."""
    policy = agent.policy
    batch = sample(agent)
    for _ in range(3):  # the reward head starts at zero: give it a slope first
        agent.updater.train_world_model(batch)
    obs = batch.observations[0]
    world_model, actor = policy.world_model, policy.actor
    z0 = world_model.encode(obs).detach()
    params = list(actor.parameters())

    def actor_grads(rollout) -> list[torch.Tensor]:
        torch.manual_seed(1)  # same exploration noise for every rollout
        rewards = rollout()
        return torch.autograd.grad(-rewards.sum(), params, allow_unused=True)

    def manual(detach: bool):
        def rollout():
            z, rewards = z0, []
            for _ in range(agent.horizon):
                action = actor.sample(z.detach() if detach else z)
                rewards.append(world_model.reward(z, action))
                z = world_model.next(z, action)
            return torch.stack(rewards)

        return rollout

    ours = actor_grads(lambda: imagine(world_model, actor, z0, agent.horizon).rewards)
    assert any(g is not None and g.abs().sum() > 0 for g in ours)
    # imagine() is the PWM estimator: the actor reads detached latents ...
    for a, b in zip(ours, actor_grads(manual(detach=True))):
        torch.testing.assert_close(a, b)
    # ... which differs from back-propagating through the actor's input as well.
    attached = actor_grads(manual(detach=False))
    assert any(not torch.allclose(a, b) for a, b in zip(ours, attached))


def test_train_critic_moves_only_the_critic(agent):
    updater = agent.updater
    imagination, _ = updater.train_actor(sample(agent).observations[0])
    metrics = {}
    diff = run_and_diff(agent, lambda: metrics.update(updater.train_critic(imagination)))
    assert diff["actor"] == [] and diff["world_model"] == []
    assert set(diff["critic"]) == {name for name, _ in agent.policy.critic.named_parameters()}
    assert torch.isfinite(metrics["critic_loss"]) and metrics["critic_grad_norm"] > 0


def test_train_world_model_moves_only_the_world_model(agent):
    updater, batch = agent.updater, sample(agent)
    metrics = {}
    diff = run_and_diff(agent, lambda: metrics.update(updater.train_world_model(batch)))
    assert diff["actor"] == [] and diff["critic"] == []
    # Every world-model tensor moves, except the reward head's hidden layers: its last layer
    # is zero-initialised, so at the first step no gradient reaches the layers below it.
    unchanged = {name for name, _ in agent.policy.world_model.named_parameters()} - set(diff["world_model"])
    assert unchanged and all(name.startswith(("reward_net.0.", "reward_net.1.")) for name in unchanged)
    assert "reward_net.2.weight" in diff["world_model"]
    assert {"model_loss", "consistency_loss", "reward_loss", "termination_loss"} <= set(metrics)
    # The scalar reward head's targets are scaled by the running reward std.
    scale = float(agent.policy.world_model.reward_scale)
    assert scale == pytest.approx(1.0 / float(agent.policy.reward_rms.std(1e-8)))


def test_full_update_moves_everything(agent):
    batch = sample(agent)
    diff = run_and_diff(agent, lambda: agent.updater.update(batch, lambda: sample(agent)))
    assert diff["actor"] and diff["critic"] and diff["world_model"]
    metrics = agent.updater.pop_metrics()
    assert all(math.isfinite(v) for v in metrics.values())
    assert agent.updater.pop_metrics() == {}


# --------------------------------------------------------------------------- returns and targets
R = torch.tensor([[1.0], [2.0]])  # [H=2, B=1]
V = torch.tensor([[10.0], [20.0], [40.0]])  # [H+1, B]


@pytest.mark.parametrize(
    ("continues", "lam", "expected"),
    [
        ([1.0, 1.0], 0.0, [11.0, 22.0]),  # one-step targets r_t + g V_{t+1}
        ([1.0, 1.0], 1.0, [12.0, 22.0]),  # Monte Carlo with the final bootstrap
        ([1.0, 1.0], 0.5, [11.5, 22.0]),
        ([0.0, 1.0], 0.5, [1.0, 22.0]),  # terminated at step 0: no bootstrap
        ([1.0, 0.0], 1.0, [2.0, 2.0]),
        ([1.0, 0.0], 0.0, [11.0, 2.0]),
    ],
)
def test_td_lambda_hand_computed(continues, lam, expected):
    c = torch.tensor(continues).unsqueeze(-1)
    targets = td_lambda_targets(R, c, V, gamma=0.5, lam=lam)
    torch.testing.assert_close(targets, torch.tensor(expected).unsqueeze(-1))
    assert not targets.requires_grad


def lambda_return_reference(rewards, continues, values, gamma, lam):
    """Textbook lambda-return: a (1 - lam)-weighted mixture of n-step returns."""
    horizon = rewards.shape[0]
    out = torch.zeros_like(rewards)
    for t in range(horizon):
        n_step = []
        for n in range(1, horizon - t + 1):
            ret, alive = torch.zeros_like(rewards[0]), torch.ones_like(rewards[0])
            for k in range(n):
                ret = ret + gamma**k * alive * rewards[t + k]
                alive = alive * continues[t + k]
            n_step.append(ret + gamma**n * alive * values[t + n])
        weights = [(1 - lam) * lam ** (n - 1) for n in range(1, len(n_step))] + [lam ** (len(n_step) - 1)]
        out[t] = sum(w * g for w, g in zip(weights, n_step))
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
def test_td_lambda_matches_reference(lam):
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    continues = (torch.rand(6, 5, generator=gen, dtype=torch.float64) > 0.2).double()
    continues[2, 0] = 0.3  # soft continuation probabilities are allowed too
    values = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    ours = td_lambda_targets(rewards, continues, values, 0.9, lam)
    torch.testing.assert_close(ours, lambda_return_reference(rewards, continues, values, 0.9, lam))


def test_discounted_return_hand_computed():
    bootstrap = torch.tensor([40.0], requires_grad=True)
    ret = discounted_return(R, torch.tensor([[1.0], [1.0]]), bootstrap, 0.5)
    torch.testing.assert_close(ret, torch.tensor([1.0 + 0.5 * 2.0 + 0.25 * 40.0]), check_stride=False)
    # Survival weights: continue 0.5 after step 0 scales everything after it; bootstrap gamma^H.
    ret = discounted_return(R, torch.tensor([[0.5], [1.0]]), bootstrap, 0.5)
    torch.testing.assert_close(ret.detach(), torch.tensor([1.0 + 0.25 * 2.0 + 0.125 * 40.0]))
    (grad,) = torch.autograd.grad(ret.sum(), bootstrap)
    torch.testing.assert_close(grad, torch.tensor([0.125]))
    ret = discounted_return(R, torch.tensor([[0.0], [1.0]]), bootstrap, 0.5)
    torch.testing.assert_close(ret.detach(), torch.tensor([1.0]))


def test_discounted_return_equals_lambda_one_target():
    gen = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(5, 4, generator=gen), torch.randn(6, 4, generator=gen)
    continues = torch.rand(5, 4, generator=gen)
    torch.testing.assert_close(
        discounted_return(rewards, continues, values[-1], 0.97),
        td_lambda_targets(rewards, continues, values, 0.97, 1.0)[0],
    )


# --------------------------------------------------------------------------- networks
def member_as_mlp(critic: CriticEnsemble, k: int) -> nn.Sequential:
    """Member ``k`` of the ensemble as a plain Linear -> Mish -> LayerNorm MLP."""
    layers: list[nn.Module] = []
    n = len(critic.weights)
    for i in range(n):
        w, b = critic.weights[i][k], critic.biases[i][k, 0]
        linear = nn.Linear(w.shape[0], w.shape[1])
        linear.weight.data.copy_(w.T)
        linear.bias.data.copy_(b)
        layers.append(linear)
        if i < n - 1:
            norm = nn.LayerNorm(w.shape[1])
            norm.weight.data.copy_(critic.norm_weights[i][k, 0])
            norm.bias.data.copy_(critic.norm_biases[i][k, 0])
            layers += [Mish(), norm]
    return nn.Sequential(*layers)


def test_critic_ensemble_equals_separate_members():
    torch.manual_seed(0)
    critic = CriticEnsemble(16, [32, 24], n_critics=3)
    with torch.no_grad():  # non-trivial norm and bias parameters
        for p in [*critic.biases, *critic.norm_weights, *critic.norm_biases]:
            p.add_(torch.randn_like(p) * 0.1)
    z = torch.randn(5, 7, 16)
    out = critic(z)
    assert out.shape == (3, 5, 7)
    for k in range(3):
        torch.testing.assert_close(out[k], member_as_mlp(critic, k)(z).squeeze(-1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(critic.min_value(z), out.amin(0))
    # Members are initialised independently (orthogonal init per member).
    assert not torch.allclose(critic.weights[0][0], critic.weights[0][1])
    w = critic.weights[0][0]  # [16, 32]: orthonormal rows (times gain sqrt 2)
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(16), rtol=1e-4, atol=1e-4)


def test_actor_std_clamp_and_deterministic_action():
    torch.manual_seed(0)
    actor = Actor(16, 3, [32], log_std_init=-5.0, log_std_min=-1.427)
    torch.testing.assert_close(actor.std(), torch.full((3,), math.exp(-1.427)))
    z = torch.randn(10, 16)
    torch.testing.assert_close(actor(z, deterministic=True), torch.tanh(actor.mu(z)))
    noise = torch.randn(10, 3)
    torch.testing.assert_close(actor.sample(z, noise), torch.tanh(actor.mu(z) + actor.std() * noise))
    assert torch.all(actor(z).abs() <= 1.0)
    actor.action_mask.copy_(torch.tensor([1.0, 0.0, 1.0]))
    assert torch.all(actor(z)[:, 1] == 0)


# --------------------------------------------------------------------------- compiled updates
def _copy_of(filled: PWM, **overrides) -> PWM:
    model = PWM("MlpPolicy", "Pendulum-v1", seed=0, **tiny_kwargs(learning_starts=60, **overrides))
    model.policy.load_state_dict(filled.policy.state_dict())
    model.replay_buffer = filled.replay_buffer
    return model


def _has_compiler() -> bool:
    try:
        check_compiler()
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _has_compiler(), reason="torch.compile finds no C++ compiler")
def test_compiled_update_matches_the_eager_one(filled):
    from torch._dynamo.utils import counters

    eager, compiled = _copy_of(filled), _copy_of(filled, compile_updates=True)
    batch = sample(eager)
    results = []
    graphs_before = counters["stats"]["unique_graphs"]
    for model in (eager, compiled):
        torch.manual_seed(1)  # the actor's noise and the critic minibatch order
        for _ in range(2):  # the second update runs the compiled code built by the first
            model.updater.update(batch, lambda: batch)
        results.append(model.updater.pop_metrics())
    assert compiled.updater._compiled.keys() == {"world_model_loss", "actor_objective", "critic_loss", "critic_targets"}
    assert counters["stats"]["unique_graphs"] - graphs_before >= 4  # really compiled, not run eagerly
    for key, value in results[0].items():
        assert results[1][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for name, module in parts(eager).items():
        for (key, p), q in zip(module.named_parameters(), parts(compiled)[name].parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"{name}.{key}")
    # The actor step froze the world model and critics only while it ran.
    assert all(p.requires_grad for p in compiled.policy.parameters())
