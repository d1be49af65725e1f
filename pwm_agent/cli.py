"""The ``pwm-agent`` command line: collect, pretrain, extract, train, evaluate.

Every sub-command mirrors the Python API and accepts ``--config FILE.yaml`` (or
``.json``) whose keys are the option names (``gradient_steps: 20000``); options given
on the command line win over the file. Run ``pwm-agent <command> --help``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["build_parser", "main"]


def _load_config(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise SystemExit(f"pwm-agent: cannot read the config file {path}: {err}") from None
    if path.endswith(".json"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as err:
            raise SystemExit(f"pwm-agent: {path} is not valid JSON: {err}") from None
    else:
        try:
            import yaml
        except ImportError as err:
            raise SystemExit(f"Reading {path} needs PyYAML: pip install pyyaml (or use a .json config).") from err
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise SystemExit(f"pwm-agent: {path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise SystemExit(f"{path} must hold a mapping of option names to values, got {type(config).__name__}.")
    return {key.replace("-", "_"): value for key, value in config.items()}


def _json_dict(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"horizon\": 5}'")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or JSON file of option values (command-line options win)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--verbose", type=int, default=1, help="0 quiet, 1 SB3 logs to stdout")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="start from this saved PWM agent (.zip) instead of a new one")
    parser.add_argument("--pwm-kwargs", type=_json_dict, default={}, help="JSON of PWM constructor arguments (with --model: overrides of the saved ones)")
    parser.add_argument("--tensorboard-log", default=None, help="TensorBoard log folder")
    parser.add_argument("--out", required=True, help="where to save the agent (.zip)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pwm-agent`` (documented options of every sub-command)."""
    parser = argparse.ArgumentParser(prog="pwm-agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    commands = {}
    p = commands["collect"] = sub.add_parser("collect", help="run a policy on an env and write a Minari dataset")
    p.add_argument("--env", required=True, help="Gymnasium env id")
    p.add_argument("--policy", default="random",
                   help="'random', a PWM agent .zip, or an SB3 model .zip with --policy-algo")
    p.add_argument("--policy-algo", default=None,
                   help="SB3 algorithm of --policy (SAC, TD3, PPO...): SB3's loader unpickles, trusted files only")
    p.add_argument("--steps", type=int, required=True, help="transitions to collect")
    p.add_argument("--deterministic", action="store_true", help="deterministic actions of the policy")
    p.add_argument("--format", default="hdf5", choices=["hdf5", "arrow"], help="Minari backend")
    p.add_argument("--out", required=True, help="dataset folder to create (its name is the dataset id)")
    _common(p)

    p = commands["pretrain"] = sub.add_parser(
        "pretrain", help="pre-train a world model on a dataset (data-parallel under torchrun)",
        description="Pre-train a world model. Under `torchrun --nproc-per-node N pwm-agent pretrain ...` "
                    "each rank trains on its shard of the episodes and gradients are averaged; rank 0 saves.")
    p.add_argument("--data", required=True, help="Minari dataset (folder or id), array folder or TD-MPC2 chunks")
    p.add_argument("--task", default=None, help="for TD-MPC2 data: keep this task (name or id)")
    p.add_argument("--gradient-steps", type=int, required=True, help="world-model gradient steps")
    p.add_argument("--batch-size", type=int, default=None, help="windows per step (default: the agent's)")
    p.add_argument("--validation-fraction", type=float, default=0.05, help="held-out episodes (0: none)")
    p.add_argument("--eval-freq", type=int, default=1000, help="steps between validation losses")
    p.add_argument("--checkpoint-freq", type=int, default=0, help="steps between checkpoints (0: none)")
    p.add_argument("--checkpoint-path", default="checkpoints", help="folder of the checkpoints")
    _agent_options(p)
    _common(p)

    p = commands["extract"] = sub.add_parser("extract", help="extract a policy from a (pre-trained) world model and a dataset")
    p.add_argument("--data", required=True, help="Minari dataset (folder or id), array folder or TD-MPC2 chunks")
    p.add_argument("--task", default=None, help="for TD-MPC2 data: keep this task (name or id)")
    p.add_argument("--gradient-steps", type=int, required=True, help="actor/critic updates")
    p.add_argument("--batch-size", type=int, default=None, help="start states per update (default: the agent's)")
    p.add_argument("--fine-tune-world-model", action="store_true", help="also train the world model")
    p.add_argument("--eval-env", default=None, help="env id to evaluate on every --eval-freq updates")
    p.add_argument("--eval-freq", type=int, default=1000, help="updates between evaluations")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    p.add_argument("--keep-best", action="store_true", help="end with the weights that evaluated best (needs --eval-env)")
    p.add_argument("--actor-ema-decay", type=float, default=0.0,
                   help="evaluate and keep a moving average of the actor's weights (e.g. 0.99; 0: off)")
    _agent_options(p)
    _common(p)

    p = commands["train"] = sub.add_parser("train", help="train online on an env (optionally from a pre-trained agent)")
    p.add_argument("--env", required=True, help="Gymnasium env id")
    p.add_argument("--timesteps", type=int, required=True, help="env steps")
    _agent_options(p)
    _common(p)

    p = commands["evaluate"] = sub.add_parser("evaluate", help="evaluate a saved agent with deterministic actions")
    p.add_argument("--model", required=True, help="saved PWM agent (.zip)")
    p.add_argument("--env", required=True, help="Gymnasium env id")
    p.add_argument("--episodes", type=int, default=10, help="episodes")
    _common(p)
    parser.set_defaults(_commands=commands)
    return parser


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; values of a ``--config`` file become the sub-command's defaults
    (so the file may supply required options and the command line still wins)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    path = _config_path(argv)
    commands = parser.get_default("_commands")
    if path and argv and argv[0] in commands:
        config = _load_config(path)
        actions = {action.dest: action for action in commands[argv[0]]._actions}
        unknown = sorted(set(config) - set(actions) - {"config"})
        if unknown:
            raise SystemExit(f"{path}: unknown option(s) {unknown} for `pwm-agent {argv[0]}`.")
        for key, value in config.items():
            actions[key].required = False
            actions[key].default = value
    return parser.parse_args(argv)


def _agent(args: argparse.Namespace, data: Any = None, env: Any = None) -> Any:
    from pwm_agent import PWM

    # --pwm-kwargs wins over the options every command has; with --model they override the save.
    kwargs = {"device": args.device, "tensorboard_log": args.tensorboard_log, "verbose": args.verbose,
              **args.pwm_kwargs}
    if args.seed is not None or not args.model:
        kwargs.setdefault("seed", args.seed)
    if args.model:
        return PWM.load(args.model, env=env, **kwargs)
    if env is None:
        obs_space, action_space = data.spaces()
        kwargs.update(observation_space=obs_space, action_space=action_space)
    return PWM("MlpPolicy", env, **kwargs)


def _task(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.isdigit() else value


def _policy(args: argparse.Namespace) -> Any:
    if args.policy == "random":
        return "random"
    if not Path(args.policy).exists() and not Path(args.policy + ".zip").exists():
        raise SystemExit(f"--policy {args.policy!r}: no such file. Pass a saved agent (.zip) or 'random'.")
    if args.policy_algo:
        import stable_baselines3

        algo = getattr(stable_baselines3, args.policy_algo.upper(), None)
        if not isinstance(algo, type):
            names = sorted(n for n in stable_baselines3.__all__ if n.isupper())
            raise SystemExit(f"--policy-algo {args.policy_algo!r} is not a Stable-Baselines3 algorithm; one of {names}.")
        return algo.load(args.policy, device=args.device)
    from pwm_agent import PWM

    return PWM.load(args.policy, device=args.device)


def _collect(args: argparse.Namespace) -> None:
    from pwm_agent import datasets
    from pwm_agent.datasets.minari_io import check_minari_target

    if args.steps < 1:
        raise SystemExit(f"--steps must be >= 1, got {args.steps}.")
    check_minari_target(args.out)  # before collecting, not after
    data = datasets.collect(args.env, _policy(args), args.steps, args.seed, args.deterministic, not args.no_progress)
    path = datasets.save_minari(data, args.out, env=args.env, data_format=args.format, algorithm_name=args.policy)
    returns = data.episode_returns()
    print(f"wrote {path}: {data.num_episodes} episodes, {data.num_transitions} transitions, "
          f"mean return {returns.mean():.1f}")


def _pretrain(args: argparse.Namespace) -> None:
    from pwm_agent import datasets

    data = datasets.load(args.data, task=_task(args.task))
    agent = _agent(args, data=data)
    val = agent.pretrain_world_model(data, args.gradient_steps, args.batch_size, args.validation_fraction,
                                     args.eval_freq, args.checkpoint_freq, args.checkpoint_path,
                                     progress_bar=not args.no_progress)
    if _is_main_rank():
        agent.save(args.out)
        print(f"saved {args.out}; held-out world-model loss {val.get('loss', float('nan')):.4f}")


def _is_main_rank() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _extract(args: argparse.Namespace) -> None:
    from pwm_agent import datasets

    if args.keep_best and not args.eval_env:
        raise SystemExit("--keep-best chooses weights by evaluation: pass --eval-env too.")
    if not 0.0 <= args.actor_ema_decay < 1.0:
        raise SystemExit(f"--actor-ema-decay must be in [0, 1) (e.g. 0.99; 0: off), got {args.actor_ema_decay}.")
    data = datasets.load(args.data, task=_task(args.task))
    agent = _agent(args, data=data)
    evaluation = agent.extract_policy(data, args.gradient_steps, args.batch_size, args.fine_tune_world_model,
                                      args.eval_env, args.eval_freq, args.eval_episodes,
                                      progress_bar=not args.no_progress, keep_best=args.keep_best,
                                      actor_ema_decay=args.actor_ema_decay)
    agent.save(args.out)
    score = f"; last evaluation {evaluation.last_mean_reward:.1f}" if evaluation and evaluation.steps else ""
    if args.keep_best and evaluation is not None:
        score += f"; kept the best, {evaluation.best_mean_reward:.1f} after {evaluation.best_step} of these updates"
    print(f"saved {args.out}{score}")


def _train(args: argparse.Namespace) -> None:
    import gymnasium as gym

    env = gym.make(args.env)
    agent = _agent(args, env=env)
    agent.learn(args.timesteps, progress_bar=not args.no_progress, reset_num_timesteps=not args.model)
    agent.save(args.out)
    print(f"saved {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from pwm_agent import PWM

    agent = PWM.load(args.model, device=args.device)
    env = Monitor(gym.make(args.env))
    env.reset(seed=args.seed)
    mean, std = evaluate_policy(agent, env, n_eval_episodes=args.episodes, deterministic=True)
    print(f"{args.model} on {args.env}: mean return {mean:.1f} +/- {std:.1f} over {args.episodes} episodes")


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "collect": _collect, "pretrain": _pretrain, "extract": _extract, "train": _train, "evaluate": _evaluate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pwm-agent``; returns the exit status."""
    args = _parse(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from pwm_agent.pwm.distributed import init_from_environment

    if init_from_environment() and args.command != "pretrain":
        raise SystemExit(f"`pwm-agent {args.command}` runs in one process; only `pretrain` is data-parallel.")
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError) as err:  # bad input (data, checkpoints, files, options): no traceback
        print(f"pwm-agent {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
