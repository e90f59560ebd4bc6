"""`gemmaforge sft --config FILE [--resume]`: supervised fine-tuning on chat or prompt/response JSONL.

Full fine-tuning or LoRA (`[lora] targets = [...]`) from any source `gf.load_model` takes
(`[model] init_from`), with the same Trainer, checkpoints, resume and torchrun support as
pre-training. The loss is the mean over trained (model-turn) tokens of the whole step. At the end
the final model, LoRA merged, is written to `<out_dir>/model/` (our format, with the tokenizer)
and, with `checkpoint.export_hf = true`, to `<out_dir>/model-hf/`. See docs/sft.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TrainConfig
from .data import StepBatches, eval_batches
from .distributed import DistInfo
from .errors import TrainError
from .launch import add_run_arguments, in_process_group, module_main, run_verb, training_tokenizer
from .loop import Trainer
from .losses import IGNORE_INDEX, chunked_cross_entropy
from .modules import backbone
from .objective import TOKENS
from .pretrain import initial_model
from .sft_data import Rows, pack, read_examples, trim_padding
from .trained import load_trained, to_gemma
from .validation import LossValidation

DEFAULT_SET = Path(__file__).with_name("sft_default")


class SftObjective:
    """Next-token cross-entropy on trained tokens of packed rows [B, 4, T] (sft_data)."""

    def __init__(self, chunk_size: int | None = None) -> None:
        self.chunk_size = chunk_size

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        ids, labels, positions, segments = trim_padding(batch).unbind(1)
        hidden = model(ids, positions=positions, segment_ids=segments, logits_at="none")
        gemma = backbone(model)
        # Only trained positions reach the 262k-way output projection: prompts and user turns
        # (most of a chat's tokens) cost the trunk alone.
        trained = labels != IGNORE_INDEX
        loss = chunked_cross_entropy(hidden[trained], gemma.embed.weight, labels[trained],
                                     gemma.config.final_softcap, self.chunk_size)
        return loss, {TOKENS: float(trained.sum())}

    def tokens(self, batch: torch.Tensor) -> int:
        return int((batch[:, 1] != IGNORE_INDEX).sum())


def data_files(config: TrainConfig) -> tuple[Path, Path | None]:
    """data.train / data.val; "default" names the embedded set (and its held-out validation)."""
    d = config.data
    if d.train == "default":
        return DEFAULT_SET / "train.jsonl.gz", Path(d.val) if d.val else DEFAULT_SET / "val.jsonl.gz"
    if not d.train:
        raise TrainError("data.train: name a chat or prompt/response JSONL file, or \"default\" for the embedded set")
    return Path(d.train), Path(d.val) if d.val else None


def sft(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or continue) the fine-tuning `config` describes; return the summary written to
    `<out_dir>/summary.json`."""
    return in_process_group(config, lambda info: _sft(config, resume, info))


def _sft(config: TrainConfig, resume: bool, info: DistInfo) -> dict[str, Any]:
    started = time.perf_counter()
    d, t = config.data, config.train
    tok = training_tokenizer(config, required_by="SFT")
    train_file, val_file = data_files(config)
    rows, stats = pack(read_examples(train_file, tok), d.seq_len, d.pack, d.seed)
    val_rows = pack(read_examples(val_file, tok), d.seq_len, d.pack, d.seed)[0] if val_file else None
    model = initial_model(config, info)
    if tok.vocab_size > backbone(model).config.vocab_size:
        raise TrainError(f"data.tokenizer: {tok.vocab_size} pieces, more than the model's vocabulary of "
                         f"{backbone(model).config.vocab_size}")
    if len(rows) < t.global_batch:
        raise TrainError(f"train.global_batch: {t.global_batch} rows a step, but {train_file} packs into only "
                         f"{len(rows)} rows of data.seq_len = {d.seq_len}")
    objective = SftObjective(t.loss_chunk)
    data = StepBatches(Rows(rows), t.global_batch, t.micro_batch, d.seed, info.rank, info.world_size)
    validation = None
    if val_rows is not None:
        validation = LossValidation(objective, eval_batches(Rows(val_rows), config.eval.blocks, t.micro_batch,
                                                            info.rank, info.world_size), info.device)
    trainer = Trainer(model, objective, data, config, info, validation, tokenizer=tok)
    result = trainer.fit(resume)
    out = Path(config.out_dir)
    summary = {"out_dir": config.out_dir, "train_file": str(train_file), "parameters": trainer.n_params,
               "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "steps": result.step, "train_loss": result.train_loss, "val_loss": result.val_loss,
               "tokens_trained": result.tokens, "data": dataclasses.asdict(stats),
               "wall_s": time.perf_counter() - started, "train_s": result.wall_s,
               "resumed_from": result.resumed_from, "checkpoint": str(result.checkpoint),
               "world_size": info.world_size, "threads": torch.get_num_threads()}
    if info.is_main:
        summary["model"] = str(export(result.checkpoint, out / "model", tok))
        if config.checkpoint.export_hf:
            summary["model_hf"] = str(export(result.checkpoint, out / "model-hf", tok, hf=True))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def export(checkpoint: Path, directory: Path, tok: Any, hf: bool = False) -> Path:
    """The checkpoint's Gemma, LoRA merged, as an ordinary model directory (ours or Hugging Face)."""
    from ..weights import export_hf, save_model

    gemma = to_gemma(load_trained(checkpoint))
    return (export_hf if hf else save_model)(gemma, directory, tokenizer=tok, overwrite=True)


def add_sft_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return add_run_arguments(parser, config_required=False, docs="docs/sft.md")


def sft_main(args: argparse.Namespace) -> int:
    if args.config is None:
        raise TrainError("give --config FILE to train, or a step before it: gemmaforge sft select --help")
    return run_verb(args, sft, "sft")


def main(argv: list[str] | None = None) -> int:
    return module_main(argv, add_sft_arguments, sft_main, "sft", __doc__)


if __name__ == "__main__":
    sys.exit(main())
