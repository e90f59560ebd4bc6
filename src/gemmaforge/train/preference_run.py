"""`gemmaforge reward train|score` and `gemmaforge dpo`: training on preference pairs, and scoring.

Both read preference JSONL (`preference_data`), start from any source (`[model] init_from`), train
fully or with LoRA through the same Trainer as pre-training and SFT (checkpoints, resume after
kill -9, metrics, torchrun), and hold out `preference.val_fraction` of the pairs (or `data.val`)
for validation. The reward model is a `ModelWithHead(gemma, 1, "last")`; its run directory carries
the tokenizer, so `gf.score` / `gemmaforge reward score` take the run (newest checkpoint) directly.
DPO computes the reference log-probabilities once, from the starting policy, before training,
and writes the tuned policy, LoRA merged, to `<out_dir>/model/` ready to chat. See docs/preference.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..util.argtypes import POSITIVE
from ..weights.sources import CHECKPOINTS, step_dirs
from .config import TrainConfig
from .data import StepBatches, eval_batches
from .distributed import DistInfo
from .errors import TrainError
from .launch import add_run_arguments, in_process_group, run_verb, training_tokenizer
from .loop import Trainer
from .modules import ModelWithHead, backbone
from .preference import DpoObjective, RewardObjective, reference_logprobs
from .preference_data import build_items, read_pairs, render_pair, to_pair
from .pretrain import initial_model
from .sft import export
from .sft_data import Rows
from .trained import load_trained
from .validation import LossValidation


def _items(config: TrainConfig, tok: Any) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """Training and validation items: data.val if given, else a seeded `val_fraction` of the pairs."""
    d = config.data
    if not d.train:
        raise TrainError("data.train: name a preference JSONL file (prompt, chosen, rejected)")
    pairs = read_pairs(d.train)
    items, stats = build_items(tok, pairs, d.seq_len)
    info = {"pairs": stats.pairs, "too_long": stats.too_long}
    if d.val:
        val, vstats = build_items(tok, read_pairs(d.val), d.seq_len, first_index=len(pairs))
        info.update(val_pairs=vstats.items)
        return items, val, info
    n_val = int(len(items) * config.preference.val_fraction)
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(d.seed))
    val = items[order[:n_val]] if n_val else None
    info.update(val_pairs=n_val)
    return items[order[n_val:]], val, info


Build = Callable[[nn.Module, torch.Tensor, DistInfo], tuple[nn.Module, Any]]  # (model, objective) from the Gemma


def _run(config: TrainConfig, resume: bool, kind: str, build: Build) -> dict[str, Any]:
    return in_process_group(config, lambda info: _train(config, resume, kind, build, info))


def _train(config: TrainConfig, resume: bool, kind: str, build: Build, info: DistInfo) -> dict[str, Any]:
    started = time.perf_counter()
    tok = training_tokenizer(config, required_by=f"{kind} training")
    train_items, val_items, data_info = _items(config, tok)
    t = config.train
    if len(train_items) < t.global_batch:
        raise TrainError(f"train.global_batch: {t.global_batch} pairs a step, but only {len(train_items)} "
                         "training pairs fit data.seq_len")
    gemma = initial_model(config, info)
    if tok.vocab_size > gemma.config.vocab_size:
        raise TrainError(f"data.tokenizer: {tok.vocab_size} pieces, more than the model's "
                         f"{gemma.config.vocab_size}")
    every = train_items if val_items is None else torch.cat([train_items, val_items])
    model, objective = build(gemma, every, info)  # DPO's reference covers the validation pairs too
    data = StepBatches(Rows(train_items), t.global_batch, t.micro_batch, config.data.seed, info.rank,
                       info.world_size)
    validation = None if val_items is None or not len(val_items) else LossValidation(
        objective, eval_batches(Rows(val_items), len(val_items), t.micro_batch, info.rank, info.world_size),
        info.device)
    out = Path(config.out_dir)
    trainer = Trainer(model, objective, data, config, info, validation, tokenizer=tok)
    if info.is_main:
        tok.save(out)  # the run carries its tokenizer: `--model RUN` works for scoring and chat
    result = trainer.fit(resume)
    summary = {"kind": kind, "out_dir": config.out_dir, "steps": result.step, "train_loss": result.train_loss,
               "val_loss": result.val_loss, "parameters": trainer.n_params,
               "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "data": data_info, "wall_s": time.perf_counter() - started, "train_s": result.wall_s,
               "pairs_trained": result.tokens, "checkpoint": str(result.checkpoint),
               "resumed_from": result.resumed_from}
    if validation is not None:
        summary["validation"] = validation.evaluate(model.eval())
    if info.is_main:
        if kind == "dpo":
            summary["model"] = str(export(result.checkpoint, out / "model", tok))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def reward_train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train the reward model `config` describes; return its summary (also `<out_dir>/summary.json`)."""
    def build(gemma: nn.Module, items: torch.Tensor, info: DistInfo) -> tuple[nn.Module, Any]:
        return ModelWithHead(gemma, 1, "last"), RewardObjective(config.preference.margin)

    return _run(config, resume, "reward", build)


def dpo(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Optimise the policy `config` describes with DPO; return its summary."""
    p = config.preference

    def build(gemma: nn.Module, items: torch.Tensor, info: DistInfo) -> tuple[nn.Module, Any]:
        reference = reference_logprobs(gemma.to(info.device), items, config.train.micro_batch)
        return gemma, DpoObjective(reference, p.beta, p.loss, p.label_smoothing)

    return _run(config, resume, "dpo", build)


# -- scoring ---------------------------------------------------------------------------------
def load_reward_model(source: str | Path) -> nn.Module:
    """A trained reward model from its run directory (newest checkpoint) or a checkpoint."""
    path = Path(source)
    steps = step_dirs(path / CHECKPOINTS)
    model = load_trained(steps[-1] if steps else path)
    if not isinstance(model, ModelWithHead) or model.n_out != 1:
        raise TrainError(f"{source}: not a reward model (a Gemma with a one-output head, from "
                         "`gemmaforge reward train`)")
    return model


@torch.inference_mode()
def score(reward_model: nn.Module, tok: Any, prompts: Sequence[str | list[dict]], responses: Sequence[str],
          batch_size: int = 8) -> list[float]:
    """The reward of each (prompt, response), in the chat format the model was trained on, batched."""
    if len(prompts) != len(responses):
        raise TrainError(f"{len(prompts)} prompts but {len(responses)} responses")
    device = backbone(reward_model).embed.weight.device
    reward_model.eval()
    rendered = []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        # the prompt is checked as in training; the response is scored as given, even empty (a policy's
        # reply may be), so it bypasses the non-empty check training pairs need
        pair = dataclasses.replace(to_pair({"prompt": p, "chosen": "a", "rejected": "b"}, f"item {i}"),
                                   chosen=r, rejected=r + " (other)")
        rendered.append(render_pair(tok, pair)[0][0])
    out: list[float] = []
    for i in range(0, len(rendered), batch_size):
        chunk = rendered[i:i + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, row in enumerate(chunk):
            ids[j, :len(row)], mask[j, :len(row)] = torch.tensor(row), 1
        out += reward_model(ids.to(device), mask.to(device))[:, 0].float().tolist()
    return out


# -- command line ----------------------------------------------------------------------------
def add_reward_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="reward_verb", required=True)
    t = sub.add_parser("train", help="train a Bradley–Terry reward model on preference pairs")
    add_run_arguments(t, docs="docs/preference.md")
    t.set_defaults(reward_func=lambda args: run_verb(args, reward_train, "reward train"))
    s = sub.add_parser("score", help="score prompt/response JSONL with a trained reward model")
    s.add_argument("--model", required=True, help="a reward run directory or checkpoint")
    s.add_argument("--input", required=True, help='JSONL lines {"prompt": …, "response": …}, or preference '
                   'pairs {"prompt": …, "chosen": …, "rejected": …} (both sides scored)')
    s.add_argument("--tokenizer", default=None, help="tokenizer source (default: the run's)")
    s.add_argument("--batch-size", type=POSITIVE, default=8, help="pairs per forward pass")
    s.set_defaults(reward_func=_reward_score_main)


def reward_main(args: argparse.Namespace) -> int:
    return args.reward_func(args)


def _reward_score_main(args: argparse.Namespace) -> int:
    """Prints each row with its reward(s): {"prompt", "response"} rows get "reward"; preference rows
    {"prompt", "chosen", "rejected"} get both sides' rewards, and the share of pairs the model ranks
    as the data does goes to stderr."""
    from ..tokenizer import load_tokenizer
    from ..util.jsonl import read_jsonl

    tok = load_tokenizer(args.tokenizer or args.model)
    rows, sides = [], []
    for n, r in read_jsonl(args.input, TrainError):
        keys = ("chosen", "rejected") if "chosen" in r or "rejected" in r else ("response",)
        if not isinstance(r.get("prompt"), (str, list)) or not all(isinstance(r.get(k), str) for k in keys):
            raise TrainError(f"{args.input}:{n}: expected {{\"prompt\": …, \"response\": …}} or "
                             f"{{\"prompt\": …, \"chosen\": …, \"rejected\": …}} with text responses")
        rows.append(r)
        sides += [(len(rows) - 1, k) for k in keys]
    rewards = score(load_reward_model(args.model), tok, [rows[i]["prompt"] for i, _ in sides],
                    [rows[i][k] for i, k in sides], args.batch_size)
    for (i, k), value in zip(sides, rewards):
        rows[i]["reward" if k == "response" else f"{k}_reward"] = round(value, 6)
    for r in rows:
        print(json.dumps(r))
    pairs = [r for r in rows if "chosen_reward" in r]
    if pairs:
        agree = sum(r["chosen_reward"] > r["rejected_reward"] for r in pairs)
        print(f"reward score: chosen above rejected in {agree} of {len(pairs)} pairs ({agree / len(pairs):.1%})",
              file=sys.stderr)
    return 0


def add_dpo_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, docs="docs/preference.md")


def dpo_main(args: argparse.Namespace) -> int:
    return run_verb(args, dpo, "dpo")
