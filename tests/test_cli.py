"""The ``pwm-agent`` command line, run in-process end to end on Pendulum-v1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_POLICY_KWARGS
from pwm_agent import PWM, datasets
from pwm_agent.cli import build_parser, main

pytest.importorskip("minari")

TINY = json.dumps({"horizon": 4, "batch_size": 16, "learning_starts": 50, "critic_minibatches": 2,
                   "policy_kwargs": TINY_POLICY_KWARGS})


def test_every_command_documents_its_options() -> None:
    parser = build_parser()
    for name, sub in parser.get_default("_commands").items():
        for action in sub._actions:
            if action.dest not in ("help",):
                assert action.help, f"`pwm-agent {name} {action.option_strings}` has no help text"


def test_collect_pretrain_extract_train_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "pendulum-random-v0"
    assert main(["collect", "--env", "Pendulum-v1", "--steps", "300", "--seed", "0", "--out", str(data),
                 "--no-progress"]) == 0
    assert datasets.load(data).num_transitions == 300
    config = tmp_path / "pretrain.yaml"
    config.write_text(f"data: {data}\ngradient_steps: 30\npwm_kwargs: {TINY}\nverbose: 0\n")
    model = tmp_path / "wm.zip"
    assert main(["pretrain", "--config", str(config), "--out", str(model), "--no-progress"]) == 0
    assert PWM.load(model)._n_offline_updates == 30
    policy = tmp_path / "policy.zip"
    assert main(["extract", "--model", str(model), "--data", str(data), "--gradient-steps", "10", "--eval-env",
                 "Pendulum-v1", "--eval-freq", "5", "--eval-episodes", "1", "--out", str(policy),
                 "--keep-best", "--actor-ema-decay", "0.9", "--verbose", "0", "--no-progress",
                 "--pwm-kwargs", '{"bc_coef": 0.25}']) == 0
    assert PWM.load(policy).update_config.bc_coef == 0.25  # --pwm-kwargs override the loaded agent's
    printed = capsys.readouterr().out
    assert "last evaluation" in printed and "kept the best" in printed
    online = tmp_path / "online.zip"
    assert main(["train", "--model", str(policy), "--env", "Pendulum-v1", "--timesteps", "60", "--out",
                 str(online), "--verbose", "0", "--no-progress"]) == 0
    assert PWM.load(online).num_timesteps == 60
    assert main(["evaluate", "--model", str(online), "--env", "Pendulum-v1", "--episodes", "1", "--seed", "0"]) == 0
    assert "mean return" in capsys.readouterr().out


def test_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("gradient_stepz: 3\n")
    with pytest.raises(SystemExit, match="unknown option.*gradient_stepz"):
        main(["pretrain", "--config", str(config), "--data", "x", "--gradient-steps", "1", "--out", "y"])
    with pytest.raises(SystemExit):
        main(["pretrain", "--data", "x"])  # missing required options: argparse exits
    extract = ["extract", "--model", "m.zip", "--data", "x", "--gradient-steps", "1", "--out", "y"]
    with pytest.raises(SystemExit, match="pass --eval-env"):
        main([*extract, "--keep-best"])
    with pytest.raises(SystemExit, match="actor-ema-decay must be in"):
        main([*extract, "--actor-ema-decay", "1.5"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1,\n")
    with pytest.raises(SystemExit, match="not valid YAML"):
        main(["pretrain", "--config", str(broken), "--out", "y"])
    with pytest.raises(SystemExit, match="cannot read the config file"):
        main(["pretrain", "--config", str(tmp_path / "missing.yaml"), "--out", "y"])


def test_bad_input_is_one_line_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a dataset that does not exist: exit status 2 and the loader's message
    assert main(["pretrain", "--data", str(tmp_path / "nope"), "--gradient-steps", "1", "--out", "y",
                 "--no-progress"]) == 2
    assert "pwm-agent pretrain: error:" in capsys.readouterr().err
    # collect checks its output and policy before collecting anything
    collect = ["collect", "--env", "Pendulum-v1", "--steps", "50", "--no-progress"]
    assert main([*collect, "--out", str(tmp_path / "mydata")]) == 2
    assert "must end in a version" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no such file. Pass a saved agent"):
        main([*collect, "--policy", "randm", "--out", str(tmp_path / "d-v0")])
    with pytest.raises(SystemExit, match="--steps must be >= 1"):
        main([*collect[:3], "--steps", "0", "--out", str(tmp_path / "d-v0")])


def test_pretrain_on_tdmpc2_chunks_with_task(tmp_path: Path) -> None:
    """TD-MPC2 data has no spaces: the command builds them from the data's dims."""
    chunk = Path(__file__).parent / "fixtures" / "tdmpc2_chunks" / "chunk-tensordict-0.15.3.pt"
    model = tmp_path / "wm.zip"
    assert main(["pretrain", "--data", str(chunk), "--task", "pendulum-swingup", "--gradient-steps", "3",
                 "--validation-fraction", "0", "--pwm-kwargs", TINY, "--out", str(model), "--verbose", "0",
                 "--no-progress"]) == 0
    agent = PWM.load(model)
    assert agent.observation_space.shape == (3,) and agent.action_space.shape == (1,)
