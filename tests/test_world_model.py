"""World model: shapes, heads, task embeddings, SimNorm, two-hot, Mish, loss, presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pwm_agent.world_model import PRESETS, WorldModel, WorldModelConfig, WorldModelLossWeights, make_config
from pwm_agent.world_model import world_model_loss
from pwm_agent.world_model.layers import Mish, SimNorm, activation, mlp
from pwm_agent.world_model.math import soft_ce, symexp, symlog, two_hot, two_hot_inv

O, A, L, B, T = 5, 2, 16, 7, 4


def tiny_config(**overrides) -> WorldModelConfig:
    return make_config("small", latent_dim=L, enc_dims=[32], mlp_dims=[32, 32], **overrides)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("reward_head", ["scalar", "twohot"])
@pytest.mark.parametrize("lead", [(B,), (T, B)], ids=["batch", "time-major"])
def test_shapes(reward_head, lead):
    model = WorldModel(O, A, tiny_config(reward_head=reward_head))
    obs, act = torch.randn(*lead, O), torch.rand(*lead, A) * 2 - 1
    z = model.encode(obs)
    assert z.shape == (*lead, L)
    z2 = model.next(z, act)
    assert z2.shape == (*lead, L)
    assert model.reward(z, act).shape == lead
    bins = model.config.num_bins if reward_head == "twohot" else 1
    assert model.reward_logits(z, act).shape == (*lead, bins)
    assert model.termination_logit(z2).shape == lead
    cont = model.continuation(z2)
    assert cont.shape == lead and torch.all((cont >= 0) & (cont <= 1))
    # Time-major tensors give the same values as a flattened batch.
    flat = model.encode(obs.reshape(-1, O)).reshape(*lead, L)
    torch.testing.assert_close(z, flat)


def test_zero_initialised_reward_head():
    for head in ("scalar", "twohot"):
        model = WorldModel(O, A, tiny_config(reward_head=head))
        z, act = model.encode(torch.randn(B, O)), torch.zeros(B, A)
        torch.testing.assert_close(model.reward_logits(z, act), torch.zeros(B, 1 if head == "scalar" else 101))
        torch.testing.assert_close(model.reward(z, act), torch.zeros(B))


def test_no_termination_head():
    model = WorldModel(O, A, tiny_config(termination_head=False))
    assert model.termination_net is None
    z = model.encode(torch.randn(T, B, O))
    assert torch.all(model.continuation(z) > 1 - 1e-6)
    assert torch.all(model.termination_logit(z) == -30.0)
    obs = torch.randn(T + 1, B, O)
    _, parts = world_model_loss(model, obs, torch.zeros(T, B, A), torch.zeros(T, B), torch.zeros(T, B))
    assert "termination_loss" not in parts


def test_multitask_task_embedding():
    model = WorldModel(O, A, tiny_config(num_tasks=3, task_dim=8), action_dims=[2, 1, 2])
    assert model.multitask
    assert model.task_emb.weight.shape == (3, 8)
    assert model.encoder[0].in_features == O + 8
    assert model.dynamics[0].in_features == L + 8 + A
    assert model.reward_net[0].in_features == L + 8 + A
    assert model.termination_net[0].in_features == L + 8
    torch.testing.assert_close(model.action_masks, torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    obs, act = torch.randn(T, B, O), torch.zeros(T, B, A)
    with pytest.raises(ValueError, match="pass `task`"):
        model.encode(obs[0])
    task = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    z = model.encode(obs, task)  # broadcast over time
    assert z.shape == (T, B, L)
    assert model.next(z, act, task).shape == (T, B, L)
    assert model.reward(z, act, task).shape == (T, B)
    assert model.termination_logit(z, task).shape == (T, B)
    # The embedding is concatenated to the input: same as calling the encoder by hand.
    emb = model.task_emb(task)
    torch.testing.assert_close(model.encode(obs[0], task), model.encoder(torch.cat([obs[0], emb], -1)))
    # Different tasks give different latents for one observation.
    same_obs = obs[0, :1].expand(3, O)
    latents = model.encode(same_obs, torch.arange(3))
    assert not torch.allclose(latents[0], latents[1])
    # max_norm=1 embeddings.
    assert torch.all(model.task_emb(torch.arange(3)).norm(dim=-1) <= 1.0 + 1e-5)
    loss, _ = world_model_loss(model, torch.randn(T + 1, B, O), act, torch.zeros(T, B), torch.zeros(T, B), task)
    loss.backward()
    assert model.task_emb.weight.grad is not None and model.task_emb.weight.grad.abs().sum() > 0


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="multiple of simnorm_dim"):
        WorldModelConfig(latent_dim=12)
    with pytest.raises(ValueError, match="reward_head"):
        WorldModelConfig(reward_head="gauss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task_dim"):
        WorldModelConfig(num_tasks=2)
    with pytest.raises(ValueError, match="Unknown world-model preset"):
        make_config("huge")
    config = tiny_config(reward_head="twohot")
    assert WorldModelConfig.from_dict(config.to_dict()) == config
    assert config.enc_dims == (32,)


# --------------------------------------------------------------------------- layers and math
def test_simnorm_groups_sum_to_one():
    x = torch.randn(3, 4, 32) * 10
    y = SimNorm(8)(x)
    groups = y.reshape(3, 4, 4, 8)
    torch.testing.assert_close(groups.sum(-1), torch.ones(3, 4, 4))
    assert torch.all(y >= 0)
    torch.testing.assert_close(groups, F.softmax(x.reshape(3, 4, 4, 8), dim=-1))
    model = WorldModel(O, A, tiny_config())
    z = model.encode(torch.randn(B, O) * 100)
    torch.testing.assert_close(z.reshape(B, L // 8, 8).sum(-1), torch.ones(B, L // 8))


def test_symlog_symexp_inverse():
    x = torch.linspace(-1000, 1000, 2001, dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)


@pytest.mark.parametrize("num_bins,vmin,vmax", [(101, -10.0, 10.0), (51, -5.0, 5.0)])
def test_two_hot_round_trip(num_bins, vmin, vmax):
    x = torch.cat([torch.linspace(-50, 50, 301), torch.tensor([0.0, 1e-3, -1e-3])]).double()
    encoded = two_hot(x, num_bins, vmin, vmax)
    assert encoded.shape == (x.numel(), num_bins)
    torch.testing.assert_close(encoded.sum(-1), torch.ones_like(x))
    assert torch.all(encoded >= 0) and torch.all((encoded > 0).sum(-1) <= 2)
    # Decoding the expectation over bins (log of the two-hot as logits) gives x back.
    decoded = two_hot_inv(torch.log(encoded.clamp_min(1e-30)), vmin, vmax)
    torch.testing.assert_close(decoded, x, rtol=1e-6, atol=1e-6)
    symlog_space = two_hot_inv(torch.log(encoded.clamp_min(1e-30)), vmin, vmax, apply_symexp=False)
    torch.testing.assert_close(symlog_space, symlog(x), rtol=1e-6, atol=1e-6)
    # Out-of-range values clamp to the last bins.
    big = two_hot(torch.tensor([1e9, -1e9]).double(), num_bins, vmin, vmax)
    assert big[0, -1] == 1 and big[1, 0] == 1


def test_soft_ce_minimised_by_two_hot():
    target = torch.tensor([0.3, -2.0, 7.0])
    logits = torch.zeros(3, 101, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        soft_ce(logits, target, 101, -10.0, 10.0).sum().backward()
        opt.step()
    torch.testing.assert_close(two_hot_inv(logits.detach(), -10.0, 10.0), target, rtol=2e-2, atol=2e-2)


def test_mish_matches_torch():
    x = torch.cat([torch.linspace(-30, 30, 1201), torch.tensor([-100.0, 0.0, 100.0])]).requires_grad_(True)
    ours = Mish()(x)
    ref = F.mish(x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(x)
    (g_ours,) = torch.autograd.grad(ours, x, grad)
    (g_ref,) = torch.autograd.grad(ref, x, grad)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5)
    # In the range activations live in after LayerNorm, it is close to float32 precision.
    core = torch.linspace(-5, 5, 1001)
    torch.testing.assert_close(Mish()(core), F.mish(core), rtol=1e-5, atol=1e-6)
    # Without autograd (inference) the values are the same as with it.
    with torch.no_grad():
        torch.testing.assert_close(Mish()(x), ours.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(Mish()(x.detach()), ours.detach(), rtol=1e-6, atol=1e-7)
    assert isinstance(activation("mish"), Mish)
    with pytest.raises(ValueError, match="Unknown activation"):
        activation("gelu2")


def test_mish_relative_precision_in_left_tail():
    x = torch.linspace(-20, -5, 301)
    torch.testing.assert_close(Mish()(x), F.mish(x), rtol=1e-4, atol=0.0)  # inference path
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(Mish()(xg), F.mish(xg), rtol=1e-4, atol=0.0)  # autograd path


def test_mish_gradcheck_float64():
    x = torch.randn(64, dtype=torch.float64) * 4
    x = torch.cat([x, torch.tensor([-25.0, -5.0, 0.0, 5.0, 25.0], dtype=torch.float64)]).requires_grad_(True)
    assert torch.autograd.gradcheck(Mish(), (x,), eps=1e-6, atol=1e-6)
    torch.testing.assert_close(Mish()(x), F.mish(x))


def test_mlp_layout():
    net = mlp(5, [8, 8], 3)
    assert len(net) == 3 and isinstance(net[-1], torch.nn.Linear)
    assert net(torch.randn(4, 5)).shape == (4, 3)
    net = mlp(5, [8], 16, SimNorm(8), dropout=0.1)
    assert net[0].dropout is not None and net[1].dropout is None
    keys = set(net.state_dict())
    assert {"0.weight", "0.bias", "0.ln.weight", "0.ln.bias", "1.ln.weight"} <= keys


# --------------------------------------------------------------------------- loss
def predictable_windows(n: int = 32):
    """Windows of a deterministic linear system, so every loss term can be learned."""
    obs = [torch.randn(n, O)]
    actions = torch.rand(T, n, A) * 2 - 1
    for t in range(T):
        nxt = 0.9 * obs[-1]
        nxt[:, :A] += 0.5 * actions[t]
        obs.append(nxt)
    observations = torch.stack(obs)
    rewards = -observations[:-1, :, 0] ** 2 + actions[..., 0]
    terminated = (observations[1:, :, 1] > 1.0).float()
    assert 0 < terminated.mean() < 0.5
    return observations, actions, rewards, terminated


@pytest.mark.parametrize("reward_head", ["scalar", "twohot"])
def test_world_model_loss_decreases(reward_head):
    model = WorldModel(O, A, tiny_config(reward_head=reward_head))
    obs, actions, rewards, terminated = predictable_windows()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, reward_losses = [], []
    for _ in range(50):
        loss, parts = world_model_loss(model, obs, actions, rewards, terminated, None, WorldModelLossWeights())
        assert set(parts) == {"consistency_loss", "reward_loss", "termination_loss"}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        reward_losses.append(float(parts["reward_loss"]))
    assert losses[-1] < 0.6 * losses[0]
    assert reward_losses[-1] < 0.6 * reward_losses[0]


def test_world_model_loss_weights_and_shape_errors():
    model = WorldModel(O, A, tiny_config())
    obs, actions = torch.randn(T + 1, B, O), torch.zeros(T, B, A)
    rewards, terminated = torch.randn(T, B), torch.zeros(T, B)
    total, parts = world_model_loss(model, obs, actions, rewards, terminated)
    w = WorldModelLossWeights()
    expected = w.consistency * parts["consistency_loss"] + w.reward * parts["reward_loss"]
    expected = expected + w.termination * parts["termination_loss"]
    torch.testing.assert_close(total.detach(), expected)
    # rho = 0: only the first step counts.
    _, first = world_model_loss(model, obs, actions, rewards, terminated, None, WorldModelLossWeights(rho=0.0))
    _, one = world_model_loss(model, obs[:2], actions[:1], rewards[:1], terminated[:1])
    torch.testing.assert_close(first["reward_loss"] * T, one["reward_loss"])
    with pytest.raises(ValueError, match=r"Expected obs \[H\+1, B, O\]"):
        world_model_loss(model, obs[:-1], actions, rewards, terminated)


@pytest.mark.parametrize("reward_head", ["scalar", "twohot"])
def test_world_model_loss_mask_ignores_steps_past_the_episode(reward_head):
    model = WorldModel(O, A, tiny_config(reward_head=reward_head))
    obs, actions = torch.randn(T + 1, B, O), torch.randn(T, B, A).clamp(-1, 1)
    rewards, terminated = torch.randn(T, B), torch.zeros(T, B)
    total, _ = world_model_loss(model, obs, actions, rewards, terminated)
    ones, _ = world_model_loss(model, obs, actions, rewards, terminated, mask=torch.ones(T, B))
    torch.testing.assert_close(ones, total)
    mask = torch.ones(T, B)
    mask[2:, 0] = 0.0  # window 0 ends after 2 steps
    masked, _ = world_model_loss(model, obs, actions, rewards, terminated, mask=mask)
    obs2, rewards2, term2 = obs.clone(), rewards.clone(), terminated.clone()
    obs2[3:, 0], rewards2[2:, 0], term2[2:, 0] = 99.0, -50.0, 1.0  # whatever lies past the end
    changed, _ = world_model_loss(model, obs2, actions, rewards2, term2, mask=mask)
    torch.testing.assert_close(changed, masked)
    assert not torch.isclose(masked, total)


def test_consistency_targets_have_no_gradient():
    model = WorldModel(O, A, tiny_config())
    obs = torch.randn(T + 1, B, O)
    loss, _ = world_model_loss(model, obs, torch.zeros(T, B, A), torch.zeros(T, B), torch.zeros(T, B),
                               weights=WorldModelLossWeights(consistency=1.0, reward=0.0, termination=0.0))
    # Compare with a hand-written loss whose targets are detached.
    z = model.encode(obs[0])
    zs = []
    for t in range(T):
        z = model.next(z, torch.zeros(B, A))
        zs.append(z)
    targets = model.encode(obs[1:]).detach()
    rho = 0.99 ** torch.arange(T, dtype=torch.float32)
    manual = (rho * ((torch.stack(zs) - targets) ** 2).mean(dim=(1, 2))).sum() / T
    torch.testing.assert_close(loss, manual)
    g1 = torch.autograd.grad(loss, list(model.encoder.parameters()))
    g2 = torch.autograd.grad(manual, list(model.encoder.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- presets
BIG = {"tdmpc2-48M", "tdmpc2-317M"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(name):
    config = PRESETS[name]
    assert config.latent_dim % config.simnorm_dim == 0
    assert make_config(name) == config
    assert make_config(name, latent_dim=16).latent_dim == 16
    if name in BIG:
        # Only the config: building these takes hundreds of MB and seconds.
        assert config.enc_dims[0] >= 1792 and config.reward_head == "twohot"
        return
    model = WorldModel(O, A, config)
    z = model.encode(torch.randn(2, O))
    assert z.shape == (2, config.latent_dim)
    assert model.reward(z, torch.zeros(2, A)).shape == (2,)
    if name.startswith("tdmpc2"):
        assert config.reward_head == "twohot"
    multi = dataclasses.replace(config, num_tasks=2, task_dim=8)
    if name == "tdmpc2-1M":
        assert WorldModel(O, A, multi).encode(torch.randn(2, O), torch.tensor([0, 1])).shape == (2, config.latent_dim)


def test_preset_parameter_counts():
    """The TD-MPC2 presets are in the advertised size range (single task, small obs/action)."""
    counts = {}
    for name in ("tdmpc2-1M", "tdmpc2-5M"):
        model = WorldModel(O, A, PRESETS[name])
        counts[name] = sum(p.numel() for p in model.parameters())
    assert 0.4e6 < counts["tdmpc2-1M"] < 1.5e6
    assert 1.5e6 < counts["tdmpc2-5M"] < 6e6


def test_weighted_running_stats_equal_stats_of_the_selected_samples():
    from pwm_agent.common.running_stats import TorchRunningMeanStd

    x, keep = torch.randn(6, 9) * 3 + 1, torch.rand(6, 9) > 0.4
    weighted, subset = TorchRunningMeanStd(epsilon=0.0), TorchRunningMeanStd(epsilon=0.0)
    weighted.update(torch.randn(50))
    subset.load_state_dict(weighted.state_dict())
    weighted.update(x, keep.float())
    subset.update(x[keep])
    torch.testing.assert_close(weighted.mean, subset.mean)
    torch.testing.assert_close(weighted.var, subset.var)
    torch.testing.assert_close(weighted.count, subset.count)
