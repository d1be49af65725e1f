"""Where multi-task policy extraction loses return: the experiments of docs/multitask.md.

Three modes, all on one task's dataset written by ``examples/multitask/train_checkpoint.py``:

- ``single``: a single-task world model pre-trained on that data alone, then extracted;
- ``pretrained``: ``PWM.from_pretrained`` on a multi-task checkpoint (optionally
  fine-tuning the world model on the task's data first), then extracted;
- ``diagnose``: after a ``pretrained`` extraction, compare the model's rewards, open-loop
  predictions and critic values with what happens in the real env.

Extraction runs in rounds of 1,000 updates, each followed by an evaluation (deterministic
actions, fixed starts; score = return / 1000)::

    python benchmarks/extraction_gap.py single --data outputs/mt4r --task cartpole-swingup
    python benchmarks/extraction_gap.py single --data outputs/mt4r --task cartpole-swingup --preset tdmpc2-1M
    python benchmarks/extraction_gap.py pretrained --data outputs/mt4r --task cup-catch --fine-tune 3000
    python benchmarks/extraction_gap.py diagnose --data outputs/mt4r --task cartpole-swingup \\
        --checkpoint pwm_agent/pretrained/mt4-1M.pt --extract 2000
    python benchmarks/extraction_gap.py pretrained --data outputs/mt4r --task cup-catch --select-every 250

``--select-every N`` evaluates every ``N`` updates on episodes of its own seeded env, ends with
the best weights (``extract_policy(keep_best=True)``) and scores them on the fixed starts.
``--actor-ema-decay D`` evaluates and keeps a moving average of the actor's weights instead
of its last ones (``extract_policy(actor_ema_decay=D)``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

import pwm_agent  # noqa: F401  (registers pwm_agent/<task>)
from pwm_agent import PWM, datasets

logger = logging.getLogger("extraction-gap")


def rollout(agent: PWM, env_id: str, seed: int) -> dict[str, np.ndarray]:
    """One deterministic episode: observations [T + 1, O], actions [T, A], rewards [T]."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, done = [obs], [], [], False
    while not done:
        action = agent.predict(obs, deterministic=True)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        done = terminated or truncated
    return {"obs": np.asarray(observations, np.float32), "act": np.asarray(actions, np.float32),
            "rew": np.asarray(rewards, np.float32)}


def score(agent: PWM, env_id: str, episodes: int) -> float:
    return float(np.mean([rollout(agent, env_id, 10_000 + i)["rew"].sum() for i in range(episodes)])) / 1000


def extract_best(agent: PWM, data: datasets.OfflineDataset, args: argparse.Namespace) -> dict[str, Any]:
    """Extraction with ``keep_best``: evaluations on episodes of one seeded env choose the
    weights; the chosen policy is then scored on the fixed starts of :func:`score` (other episodes)."""
    env = gym.make(f"pwm_agent/{args.task}")
    env.reset(seed=20_000)
    last = ScoreLastWeights(f"pwm_agent/{args.task}")
    evaluation = agent.extract_policy(data, args.extract, eval_env=env, eval_freq=args.select_every,
                                      n_eval_episodes=args.episodes, keep_best=True,
                                      actor_ema_decay=args.actor_ema_decay, callback=last)
    assert evaluation is not None
    held_out = score(agent, f"pwm_agent/{args.task}", 10)
    logger.info("%s: best of %d evaluations at update %s, held-out score %.3f (last weights %.3f)", args.task,
                len(evaluation.steps), evaluation.best_step, held_out, last.score)
    return {"selection": [[s, float(np.mean(r)) / 1000] for s, r in zip(evaluation.steps, evaluation.results)],
            "best_step": evaluation.best_step, "held_out_score": held_out, "held_out_last": last.score}


class ScoreLastWeights(BaseCallback):
    """Scores the weights of the last update on the fixed starts, before keep_best swaps
    the best ones in (a user callback's training end comes before the evaluator's): the
    score of extraction without selection, from the same run."""

    def __init__(self, env_id: str) -> None:
        super().__init__()
        self.env_id, self.score = env_id, float("nan")

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.score = score(self.model, self.env_id, 10)


def extract_curve(agent: PWM, data: datasets.OfflineDataset, args: argparse.Namespace) -> list[list[float]]:
    curve = []
    for done in range(1000, args.extract + 1, 1000):
        agent.extract_policy(data, 1000, actor_ema_decay=args.actor_ema_decay)
        curve.append([done, score(agent, f"pwm_agent/{args.task}", args.episodes)])
        logger.info("%s: %d extraction updates -> %.3f", args.task, done, curve[-1][1])
    return curve


def open_loop_error(agent: PWM, episode: dict[str, np.ndarray], k: int) -> tuple[float, float]:
    """Mean predicted and real ``k``-step reward sums, from every 10th state, real actions."""
    wm = agent.policy.world_model
    pred, real = [], []
    with torch.no_grad():
        for t0 in range(0, len(episode["act"]) - k, 10):
            z = wm.encode(torch.as_tensor(episode["obs"][t0])[None])
            total = 0.0
            for j in range(k):
                a = torch.as_tensor(episode["act"][t0 + j])[None]
                total += float(wm.reward(z, a))
                z = wm.next(z, a)
            pred.append(total)
            real.append(float(episode["rew"][t0 : t0 + k].sum()))
    return float(np.mean(pred)), float(np.mean(real))


def diagnose(agent: PWM, data: datasets.OfflineDataset, args: argparse.Namespace) -> dict[str, Any]:
    """Model vs reality along a data episode and along the extracted policy's own episode."""
    first = data.episode(0)
    scaled = agent.policy.scale_action(first["actions"])  # the agent's [-1, 1] actions
    data_ep = {"obs": first["observations"].astype(np.float32), "act": scaled.astype(np.float32),
               "rew": first["rewards"].astype(np.float32)}
    policy_ep = rollout(agent, f"pwm_agent/{args.task}", 10_000)
    wm, out = agent.policy.world_model, {}
    for name, ep in (("data", data_ep), ("extracted", policy_ep)):
        with torch.no_grad():
            z = wm.encode(torch.as_tensor(ep["obs"][:-1]))
            predicted = wm.reward(z, torch.as_tensor(ep["act"])).numpy()
            values = agent.policy.critic.min_value(z).numpy()
        returns = np.zeros_like(ep["rew"])
        running = 0.0
        for t in reversed(range(len(ep["rew"]))):
            running = ep["rew"][t] + agent.gamma * running
            returns[t] = running
        out[name] = {"real_reward_sum": float(ep["rew"].sum()), "model_reward_sum": float(predicted.sum()),
                     "mean_value": float(values.mean()), "mean_discounted_return": float(returns.mean()),
                     **{f"open_loop_{k}": open_loop_error(agent, ep, k) for k in (5, 16, 32)}}
        logger.info("%s episode: %s", name, out[name])
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = datasets.load(args.data / f"{args.task}-v0")
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.mode == "single":
        obs_space, act_space = data.spaces()
        head = {"reward_head": args.reward_head} if args.reward_head else {}
        agent = PWM("MlpPolicy", None, seed=args.seed, observation_space=obs_space, action_space=act_space,
                    policy_kwargs={"world_model": args.preset, "world_model_kwargs": head},
                    **{"horizon": 5, **json.loads(args.agent_kwargs)})
        agent.pretrain_world_model(data, args.pretrain)
    else:
        checkpoint = args.checkpoint or next(args.data.glob("mt*-1M.pt"))
        agent = PWM.from_pretrained(checkpoint, task=args.task, seed=args.seed,
                                    freeze_world_model=args.fine_tune == 0,
                                    **{"horizon": 5, **json.loads(args.agent_kwargs)})
        if args.fine_tune:
            agent.pretrain_world_model(data, args.fine_tune)
    if args.select_every:
        result["keep_best"] = extract_best(agent, data, args)
    else:
        result["curve"] = extract_curve(agent, data, args)
    if args.mode == "diagnose":
        result["diagnosis"] = diagnose(agent, data, args)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["single", "pretrained", "diagnose"])
    parser.add_argument("--data", type=Path, required=True, help="train_checkpoint.py's --out folder")
    parser.add_argument("--task", required=True)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the folder's mt*-1M.pt")
    parser.add_argument("--preset", default="small", help="single mode: world-model preset")
    parser.add_argument("--reward-head", default="", choices=["", "scalar", "twohot"],
                        help="single mode: reward head (default: the preset's)")
    parser.add_argument("--pretrain", type=int, default=10_000, help="single mode: pretraining steps")
    parser.add_argument("--fine-tune", type=int, default=0, help="pretrained mode: world-model steps on the task")
    parser.add_argument("--extract", type=int, default=3_000, help="extraction updates (rounds of 1,000)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--select-every", type=int, default=0,
                        help="evaluate every N updates, keep the best weights (keep_best), score them on other episodes")
    parser.add_argument("--actor-ema-decay", type=float, default=0.0,
                        help="extract_policy(actor_ema_decay=...): evaluate and keep an average of the actor's weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agent-kwargs", default="{}", help="PWM arguments as JSON, e.g. "
                        '\'{"batch_size": 256, "learning_rate": 1e-4}\'')
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
