"""`gemmaforge rlhf --config FILE`: optimise a policy against a reward (RLOO, GRPO or PPO) with rollouts
from gemmaforge's own batched KV-cache engine, on the same Trainer as every other objective
(checkpoints, resume after kill -9, metrics and plots, torchrun). See docs/rlhf.md.

The policy starts from `[model] init_from` (full or LoRA); the KL reference is that starting policy:
with LoRA the same weights with the adapters off (one copy in memory), otherwise a frozen copy.
Prompts come from a JSONL file or from a reasoning-gym generator (`rl.prompts =
"reasoning_gym:basic_arithmetic"`), whose last `rl.held_out` questions are never trained on and
are evaluated before and after: the held-out accuracy (or mean reward) is in the summary.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

from ..inference.generate import generate
from ..util.jsonl import read_jsonl
from .config import TrainConfig
from .distributed import DistInfo
from .errors import TrainError
from .launch import add_run_arguments, in_process_group, run_verb, training_tokenizer
from .loop import Trainer
from .lora import lora_layers
from .modules import PolicyWithValue, backbone
from .plot import plot_rl
from .pretrain import initial_model
from .rewards import RewardSpec, build_scorer, total_rewards
from .rl_objective import PolicyGradientObjective
from .rollouts import Prompt, Rollouts, RolloutSettings, render_prompt
from .sft import export


def load_prompts(config: TrainConfig) -> tuple[list[Prompt], list[Prompt]]:
    """(training prompts, held-out prompts)."""
    r = config.rl
    if r.prompts.startswith("reasoning_gym:"):
        name = r.prompts.split(":", 1)[1]
        try:
            import reasoning_gym
        except ImportError:
            raise TrainError("rl.prompts: reasoning-gym is not installed (pip install reasoning-gym)") from None
        try:
            data = reasoning_gym.create_dataset(name, size=r.prompts_size, seed=config.train.seed, **r.prompts_options)
        except Exception as e:  # an unknown generator name or bad options, in the library's words
            raise TrainError(f"rl.prompts: reasoning-gym dataset {name!r}: {e}") from None
        prompts = [Prompt(e["question"] + "\nGive only the final answer.", {"entry": json.loads(json.dumps(e)),
                                                                          "dataset": name}) for e in data]
    elif r.prompts:
        prompts = []
        for n, record in read_jsonl(r.prompts, TrainError):
            if not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
                raise TrainError(f"{r.prompts}:{n}: expected {{\"prompt\": \"…\", …}} with a non-empty prompt")
            prompts.append(Prompt(record["prompt"], {k: v for k, v in record.items() if k != "prompt"}))
    else:
        raise TrainError("rl.prompts: name a JSONL file of prompts or \"reasoning_gym:GENERATOR\"")
    if r.held_out >= len(prompts):
        raise TrainError(f"rl.held_out = {r.held_out} leaves no training prompt of {len(prompts)}")
    cut = len(prompts) - r.held_out
    return prompts[:cut], prompts[cut:]


@torch.no_grad()
def held_out_reward(model: Any, tok: Any, prompts: list[Prompt], specs, scorers, max_new_tokens: int,
                    prompt_format: str = "chat", stop: tuple[str, ...] = ()) -> dict:
    """Greedy replies to held-out prompts and their mean reward (for a 0/1 checker: the accuracy); a
    reply ends where a rollout would (`stop`)."""
    gemma = backbone(model)
    was = gemma.training
    gemma.eval()
    rendered = [render_prompt(tok, p.text, prompt_format) for p in prompts]
    replies = []
    for i in range(0, len(rendered), 16):
        replies += generate(gemma, tok, rendered[i:i + 16], max_new_tokens, stop=stop)
    gemma.train(was)
    rewards, _ = total_rewards(specs, scorers, [p.text for p in prompts], replies, [p.meta for p in prompts])
    mean = sum(rewards) / len(rewards)
    var = sum((x - mean) ** 2 for x in rewards) / max(len(rewards) - 1, 1)
    return {"mean_reward": mean, "stderr": (var / len(rewards)) ** 0.5, "n": len(rewards), "rewards": rewards,
            "replies": replies, "examples": [{"prompt": p.text, "reply": r, "reward": w}
                         for p, r, w in list(zip(prompts, replies, rewards))[:5]]}


def rlhf(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or continue) the RL `config` describes; return its summary (`<out_dir>/summary.json`)."""
    return in_process_group(config, lambda info: _rlhf(config, resume, info))


def _rlhf(config: TrainConfig, resume: bool, info: DistInfo) -> dict[str, Any]:
    started = time.perf_counter()
    r, t = config.rl, config.train
    if not r.rewards:
        raise TrainError("rl.rewards: give at least one [[rl.rewards]] table (kind = function, reasoning_gym "
                         "or reward_model)")
    tok = training_tokenizer(config, required_by="RL")
    specs = [RewardSpec(s.kind, s.weight, s.target, s.name) for s in r.rewards]
    scorers = [build_scorer(s, tok) for s in specs]
    train_prompts, held = load_prompts(config)
    gemma = initial_model(config, info)
    reference = None if lora_layers(gemma) else copy.deepcopy(gemma).requires_grad_(False).eval()
    policy = PolicyWithValue(gemma) if r.algorithm == "ppo" else gemma
    settings = RolloutSettings(r.algorithm, r.prompts_per_step, r.k, r.max_new_tokens, r.temperature,
                               t.micro_batch, r.epochs, r.kl_coef, r.kl_in_loss, r.kl_estimator,
                               r.no_eos_penalty, t.seed, r.kl_target, r.kl_horizon, r.prompt_format,
                               tuple(r.stop))
    data = Rollouts(train_prompts, tok, specs, scorers, settings, reference)
    data.check_room(train_prompts + held, gemma.config.max_seq_len)
    objective = PolicyGradientObjective(r.clip, r.kl_in_loss, r.kl_estimator, r.vf_coef,
                                        temperature=r.temperature)
    out = Path(config.out_dir)
    trainer = Trainer(policy, objective, data, config, info, tokenizer=tok)

    def evaluate() -> dict | None:
        return held_out_reward(policy, tok, held, specs, scorers, r.max_new_tokens, r.prompt_format,
                               tuple(r.stop)) if held else None

    before = evaluate() if not resume else None
    if info.is_main:
        tok.save(out)
    result = trainer.fit(resume)
    after = evaluate()
    summary = {"kind": "rlhf", "algorithm": r.algorithm, "out_dir": config.out_dir, "steps": result.step,
               "train_loss": result.train_loss, "wall_s": time.perf_counter() - started,
               "train_s": result.wall_s, "tokens_trained": result.tokens, "checkpoint": str(result.checkpoint),
               "resumed_from": result.resumed_from, "held_out_before": before, "held_out_after": after}
    if info.is_main:
        summary["model"] = str(export(result.checkpoint, out / "model", tok))
        summary["plot"] = str(plot_rl(out / "metrics.jsonl", out / "rl.png", f"{r.algorithm.upper()}: {out.name}"))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_rlhf_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, docs="docs/rlhf.md")


def _show(summary: dict[str, Any]) -> None:
    print(json.dumps({k: v for k, v in summary.items() if k not in ("held_out_before", "held_out_after")}, indent=2))
    for label in ("held_out_before", "held_out_after"):
        if summary.get(label):
            print(f"{label}: mean reward {summary[label]['mean_reward']:.3f} ± {summary[label]['stderr']:.3f} "
                  f"over {summary[label]['n']} prompts")


def rlhf_main(args: argparse.Namespace) -> int:
    return run_verb(args, rlhf, "rlhf", show=_show)
