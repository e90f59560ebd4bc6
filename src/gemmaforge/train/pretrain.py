"""`gemmaforge pretrain --config FILE [--resume]`: train a Gemma from scratch on token blocks.

Also `python -m gemmaforge.train.pretrain --config FILE` and, on several processes or nodes,
`torchrun --nproc-per-node N -m gemmaforge.train.pretrain --config FILE`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import GemmaForgeError
from ..model import Gemma
from .checkpoint import seed_everything
from .config import TrainConfig
from .data import StepBatches, eval_batches, open_blocks, unigram_entropy
from .distributed import DistInfo
from .errors import TrainError
from .launch import add_run_arguments, in_process_group, module_main, run_verb, training_tokenizer
from .loop import Trainer
from .lora import LoraSettings, apply_lora
from .modules import freeze
from .objective import NextTokenObjective
from .plot import plot_loss
from .validation import LossValidation


def init_weights(model: Gemma, std: float) -> None:
    """Normal(0, std) matrices, with the residual-branch outputs (o_proj, down_proj) scaled by
    1/sqrt(2·layers) as in GPT-2, so the residual stream does not grow with depth; norm gains 0
    (Gemma's RMSNorm multiplies by 1 + w)."""
    out_std = std / math.sqrt(2 * model.config.n_layers)
    for name, p in model.named_parameters():
        if p.dim() < 2:
            nn.init.zeros_(p)
        else:
            nn.init.normal_(p, 0.0, out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std)


def initial_model(config: TrainConfig, info: DistInfo) -> Gemma:
    """The Gemma a run starts from: `model.init_from` loaded (any source gf.load_model takes) or a
    fresh random init, the same on every rank; LoRA adapters (`[lora] targets`) and `model.freeze`
    applied. Seeds the per-rank RNG."""
    seed_everything(config.train.seed)  # the same initial weights on every rank
    if config.model.init_from is not None:
        model = load_start(config.model.init_from)
    else:
        model = Gemma(config.model.gemma_config())
        init_weights(model, config.model.init_std)
    if config.lora.targets:
        lo = config.lora
        apply_lora(model, LoraSettings(tuple(lo.targets), lo.rank, lo.alpha, lo.dropout))
    freeze(model, config.model.freeze)
    seed_everything(config.train.seed + info.rank)  # per-rank streams from here on (checkpointed)
    return model


def load_start(source: str) -> Gemma:
    from ..weights import load_model

    try:
        return load_model(source)
    except GemmaForgeError as e:
        raise TrainError(f"model.init_from: {e}") from None


def pretrain(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or continue, with `resume`) the pre-training `config` describes; return its summary,
    which is also written to `<out_dir>/summary.json` next to metrics.jsonl and loss.png."""
    return in_process_group(config, lambda info: _pretrain(config, resume, info))


def _pretrain(config: TrainConfig, resume: bool, info: DistInfo) -> dict[str, Any]:
    started = time.perf_counter()
    d, t = config.data, config.train
    model = initial_model(config, info)
    gemma_config = model.config
    train = open_blocks(d.train, d.seq_len, gemma_config.vocab_size, "data.train")
    val = open_blocks(d.val, d.seq_len, gemma_config.vocab_size, "data.val") if d.val else None
    data = StepBatches(train, t.global_batch, t.micro_batch, d.seed, info.rank, info.world_size)
    objective = NextTokenObjective(t.loss_chunk)
    validation = LossValidation(objective, eval_batches(val, config.eval.blocks, t.micro_batch, info.rank,
                                                        info.world_size), info.device) if val else None
    trainer = Trainer(model, objective, data, config, info, validation, tokenizer=training_tokenizer(config))
    result = trainer.fit(resume)
    out = Path(config.out_dir)
    if result.tokens == 0 and (out / "summary.json").exists():  # a no-op --resume keeps the run's record
        return json.loads((out / "summary.json").read_text())
    summary = {"out_dir": config.out_dir, "parameters": trainer.n_params, "steps": result.step,
               "train_loss": result.train_loss, "val_loss": result.val_loss,
               "val_unigram_entropy": unigram_entropy(val, config.eval.blocks) if val else None,
               "tokens_trained": result.tokens, "wall_s": time.perf_counter() - started,
               "train_s": result.wall_s, "resumed_from": result.resumed_from,
               "checkpoint": str(result.checkpoint), "world_size": info.world_size,
               "device": str(info.device), "threads": torch.get_num_threads()}
    if info.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_loss(out / "metrics.jsonl", out / "loss.png", summary["val_unigram_entropy"],
                  f"{gemma_config.name or 'Gemma'} · {trainer.n_params / 1e6:.1f}M parameters")
    return summary


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return add_run_arguments(parser)


def pretrain_main(args: argparse.Namespace) -> int:
    """The CLI verb: raises GemmaForgeError (with a one-line message) on bad input. Ctrl-C or
    SIGTERM stops at the next step boundary with a checkpoint, and exits 130."""
    return run_verb(args, pretrain, "pretrain")


def main(argv: list[str] | None = None) -> int:
    return module_main(argv, add_pretrain_arguments, pretrain_main, "pretrain", __doc__)


if __name__ == "__main__":
    sys.exit(main())
