"""TD-MPC2 checkpoints: both key layouts reproduce the original code's outputs (fixtures)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from pwm_agent.checkpoints import CheckpointError, load_checkpoint, load_world_model
from pwm_agent.envs.task_sets import MT30

from conftest import tdmpc2_checkpoint

# Reference outputs of the original code (see the README there); the checkpoints themselves
# come from the shared fixtures (tdmpc2_checkpoint skips a test when they are absent).
FIXTURES = Path(__file__).parent / "fixtures" / "tdmpc2"
LAYOUTS = ["legacy", "current"]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected.reshape(actual.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@torch.no_grad()
def test_world_model_matches_reference(layout: str) -> None:
    ref = torch.load(FIXTURES / f"mt30-1M-{layout}.ref.pt", weights_only=True)
    wm = load_world_model(tdmpc2_checkpoint(layout))
    task, obs, action = ref["in_task"], ref["in_obs"], ref["in_action"]
    assert (wm.obs_dim, wm.action_dim, wm.config.latent_dim, wm.config.task_dim) == (24, 6, 128, 96)
    z = wm.encode(obs, task)
    _close(z, ref["z"])
    _close(wm.task_emb.weight, ref["task_emb_used"])
    _close(wm.next(z, action, task), ref["z_next"])
    _close(wm.reward_logits(z, action, task), ref["reward_logits"])
    _close(wm.reward(z, action, task), ref["reward"])
    _close(wm.reward(z, action, task, apply_symexp=False), ref["reward_symlog"])
    # an H-step rollout, time-major [H, B, A] actions with task ids [B]
    zs = [z]
    for t in range(ref["in_action_seq"].shape[0]):
        zs.append(wm.next(zs[-1], ref["in_action_seq"][t], task))
    _close(torch.stack(zs), ref["rollout_z"])
    latents, actions = torch.stack(zs[:-1]), ref["in_action_seq"]
    _close(wm.reward_logits(latents, actions, task), ref["rollout_reward_logits"])
    _close(wm.reward(latents, actions, task), ref["rollout_reward"])
    expected_masks = torch.zeros(30, 6)
    for i, spec in enumerate(MT30):
        expected_masks[i, : spec.action_dim] = 1
    torch.testing.assert_close(wm.action_masks, expected_masks)


@pytest.mark.parametrize("layout", LAYOUTS)
@torch.no_grad()
def test_policy_prior_and_q_heads_match_reference(layout: str) -> None:
    ref = torch.load(FIXTURES / f"mt30-1M-{layout}.ref.pt", weights_only=True)
    ckpt = load_checkpoint(tdmpc2_checkpoint(layout))
    assert ckpt.layout == layout and ckpt.tasks == MT30 and not ckpt.ignored_keys
    task, action = ref["in_task"], ref["in_action"]
    z = ckpt.world_model.encode(ref["in_obs"], task)
    emb = ckpt.task_embedding(task)
    mean, log_std = ckpt.policy_prior(z, emb, task)
    _close(mean, ref["pi_mean"])
    _close(log_std, ref["pi_log_std"])
    _close(ckpt.q(z, action, emb), ref["q_logits"])
    _close(ckpt.target_q(z, action, emb), ref["q_target_logits"])
    # symexp amplifies float32 reordering (values up to ~40): compare at 2e-5 relative
    torch.testing.assert_close(ckpt.q.values(z, action, emb), ref["q_values"].squeeze(-1), rtol=2e-5, atol=1e-5)


def _resave(tmp_path: Path, state: dict, name: str) -> Path:
    path = tmp_path / name
    torch.save({"model": state}, path)
    return path


def test_compiled_prefixes_and_bare_state_dicts_load(tmp_path: Path) -> None:
    state = torch.load(tdmpc2_checkpoint("legacy"), weights_only=True)["model"]
    compiled = {("_orig_mod." + k if k.startswith("_encoder") else k): v for k, v in state.items()}
    wm = load_world_model(_resave(tmp_path, compiled, "compiled.pt"))
    reference = load_world_model(tdmpc2_checkpoint("legacy"))
    for a, b in zip(wm.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    torch.save(state, tmp_path / "bare.pt")
    assert load_checkpoint(tmp_path / "bare.pt").layout == "legacy"


def test_partial_and_broken_files_are_named(tmp_path: Path) -> None:
    state = torch.load(tdmpc2_checkpoint("current"), weights_only=True)["model"]
    partial = {k: v for k, v in state.items() if not k.startswith("_dynamics.1.")}
    with pytest.raises(CheckpointError, match="current TD-MPC2 layout. Missing: \\['_dynamics.1.weight', '_dynamics.1.bias'"):
        load_checkpoint(_resave(tmp_path, partial, "partial.pt"))
    poisoned = {**state, "_dynamics.0.weight": state["_dynamics.0.weight"].clone()}
    poisoned["_dynamics.0.weight"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="poisoned.pt: `dynamics.0.weight` holds NaN or inf"):
        load_checkpoint(_resave(tmp_path, poisoned, "poisoned.pt"))
    with pytest.raises(CheckpointError, match="entries \\['_task_emb.weight'\\] of the state dict are not tensors"):
        load_checkpoint(_resave(tmp_path, {**state, "_task_emb.weight": [1.0, 2.0]}, "listed.pt"))
    torch.save({"model": state, "pwm_agent": [1, 2]}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="meta.pt: the `pwm_agent` entry must be a dict"):
        load_checkpoint(tmp_path / "meta.pt")
    extra = {**state, "_reward.7.weight": torch.zeros(3, 3)}
    with pytest.raises(CheckpointError):
        load_checkpoint(_resave(tmp_path, extra, "extra.pt"))
    broken = tmp_path / "broken.pt"
    broken.write_bytes((tdmpc2_checkpoint("legacy")).read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(broken)
    assert zipfile.is_zipfile(tdmpc2_checkpoint("legacy"))
    with pytest.raises(CheckpointError, match="not a TD-MPC2 world model|No encoder"):
        load_checkpoint(_resave(tmp_path, {"weight": torch.zeros(2)}, "foreign.pt"))


@pytest.mark.parametrize(
    "num_tasks, obs_dim, enc_dims, latent, mlp, task_dim, bins",
    [(80, 39, (64, 64, 64), 32, 96, 16, 51), (7, 11, (48,), 24, 40, 8, 101), (30, 24, (32, 32), 64, 64, 64, 21)],
)
def test_sizes_are_read_from_the_file(
    tmp_path: Path, num_tasks: int, obs_dim: int, enc_dims: tuple, latent: int, mlp: int, task_dim: int, bins: int
) -> None:
    """Other sizes and task sets than the fixtures': every shape comes from the tensors."""
    from pwm_agent.checkpoints import save_world_model
    from pwm_agent.world_model import WorldModel, WorldModelConfig

    config = WorldModelConfig(latent_dim=latent, enc_dims=enc_dims, mlp_dims=(mlp, mlp), reward_head="twohot",
                              num_bins=bins, termination_head=False, num_tasks=num_tasks, task_dim=task_dim)
    original = WorldModel(obs_dim, 6, config, action_dims=[1 + i % 6 for i in range(num_tasks)])
    loaded = load_checkpoint(save_world_model(original, tmp_path / "m.pt")).world_model
    assert loaded.config == config and (loaded.obs_dim, loaded.action_dim) == (obs_dim, 6)
    torch.testing.assert_close(loaded.action_masks, original.action_masks)
    obs, task = torch.randn(4, obs_dim), torch.arange(4) % num_tasks
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(obs, task), original.encode(obs, task))
    # the same weights under legacy names (stacked Q tensors, no buffers) load as "legacy"
    state = torch.load(tmp_path / "m.pt", weights_only=True)["model"]
    legacy = {k: v for k, v in state.items() if k != "_action_masks"}
    za = latent + task_dim + 6
    shapes = [(mlp, za), (mlp,), (mlp,), (mlp,), (mlp, mlp), (mlp,), (mlp,), (mlp,), (bins, mlp), (bins,)]
    legacy.update({f"_Qs.params.{n}": torch.zeros(2, *shape) for n, shape in enumerate(shapes)})
    ckpt = load_checkpoint(_resave(tmp_path, legacy, "legacy.pt"))
    assert ckpt.layout == "legacy" and ckpt.world_model.config == config
    assert ckpt.q is not None and ckpt.q(torch.rand(3, latent), torch.rand(3, 6), torch.rand(3, task_dim)).shape == (
        2, 3, bins)
    legacy["_Qs.params.4"] = torch.zeros(2, 3, 3)  # inconsistent shapes: a clear error, not a crash
    with pytest.raises(CheckpointError, match="Q ensemble"):
        load_checkpoint(_resave(tmp_path, legacy, "bad-q.pt"))
