"""What every training verb (pretrain, sft, reward, dpo, rlhf) shares: the command line (the config,
`--resume`, `--threads` and the overrides of the config's most-changed fields), the process group a
run lives in, the tokenizer its checkpoints carry, a run whose Ctrl-C or SIGTERM stops after a
checkpoint (exit 130) and whose summary the main rank prints, and the `python -m` entry point
torchrun uses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..errors import GemmaForgeError
from ..util.argtypes import INTEGER, POSITIVE
from .config import TrainConfig
from .distributed import DistInfo, init_distributed, shutdown
from .errors import Interrupted, TrainError

Run = Callable[[TrainConfig, bool], dict[str, Any]]
T = TypeVar("T")


def add_run_arguments(parser: argparse.ArgumentParser, config_required: bool = True,
                      docs: str = "docs/training.md") -> argparse.ArgumentParser:
    parser.add_argument("--config", required=config_required, metavar="FILE",
                        help=f"TOML training config, or the JSON a run writes ({docs})")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in out_dir (starts fresh if there is none)")
    parser.add_argument("--threads", type=POSITIVE, default=None, metavar="N",
                        help="torch threads per process (default: torch's choice; fewer on a busy machine)")
    over = parser.add_argument_group("overrides of the config's fields")
    over.add_argument("--max-steps", type=POSITIVE, metavar="N", help="train.max_steps")
    over.add_argument("--global-batch", type=POSITIVE, metavar="N", help="train.global_batch")
    over.add_argument("--micro-batch", type=POSITIVE, metavar="N", help="train.micro_batch")
    over.add_argument("--seed", type=INTEGER, help="train.seed")
    over.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                      help="train.compile (--no-compile skips the minute of compilation a short run never repays)")
    over.add_argument("--out-dir", metavar="DIR", help="out_dir")
    over.add_argument("--init-from", metavar="SRC", help="model.init_from (any source gf.load_model takes)")
    over.add_argument("--train-data", metavar="PATH", help="data.train")
    over.add_argument("--val-data", metavar="PATH", help="data.val")
    return parser


def config_with_overrides(args: argparse.Namespace) -> TrainConfig:
    """The config file with the command line's overrides applied (and validated again)."""
    config = TrainConfig.load(args.config)
    changes = {"train": {"max_steps": args.max_steps, "global_batch": args.global_batch,
                         "micro_batch": args.micro_batch, "seed": args.seed, "compile": args.compile},
               "model": {"init_from": args.init_from},
               "data": {"train": args.train_data, "val": args.val_data}}
    sections: dict[str, Any] = {k: {f: v for f, v in fields.items() if v is not None} for k, fields in changes.items()}
    sections = {k: v for k, v in sections.items() if v}
    if args.out_dir is not None:
        sections["out_dir"] = args.out_dir
    return config.replace(**sections) if sections else config


def in_process_group(config: TrainConfig, body: Callable[[DistInfo], T]) -> T:
    """`body` inside the torchrun process group, if there is one (joined from `train.device`), left
    however `body` ends."""
    info = init_distributed(config.train.device)
    try:
        return body(info)
    finally:
        shutdown()


def training_tokenizer(config: TrainConfig, required_by: str | None = None) -> Any:
    """The tokenizer of a run (its checkpoints carry it): `data.tokenizer`, else the one `gemmaforge
    data prepare` left beside the training data, else `model.init_from`'s. Missing: None, or an error
    when `required_by` (the verb that needs it) is given."""
    from ..tokenizer import TOKENIZER_FILE, load_tokenizer

    source = config.data.tokenizer
    if source is None and config.data.train and (Path(config.data.train) / TOKENIZER_FILE).is_file():
        source = config.data.train
    guessed = source is None  # model.init_from's, which a run that does not need one may lack
    source = source or config.model.init_from
    if source is None:
        if required_by:
            raise TrainError(f"data.tokenizer: {required_by} needs the tokenizer of the chat format; set it or "
                             "model.init_from")
        return None
    try:
        return load_tokenizer(source)
    except GemmaForgeError as e:
        if guessed and not required_by:
            return None
        raise TrainError(f"data.tokenizer: {e}") from None


def run_verb(args: argparse.Namespace, run: Run, verb: str,
             show: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run a training verb from parsed arguments: 0 with the summary printed (by the main rank),
    130 when a signal stopped it after a checkpoint; bad input raises GemmaForgeError."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    main_rank = os.environ.get("RANK", "0") == "0"
    try:
        summary = run(config_with_overrides(args), args.resume)
    except Interrupted as e:
        if main_rank:
            print(f"gemmaforge {verb}: {e}", file=sys.stderr)
        return 130
    if main_rank:
        (show or (lambda s: print(json.dumps(s, indent=2))))(summary)
    return 0


def module_main(argv: list[str] | None, add_arguments: Callable[[argparse.ArgumentParser], Any],
                verb_main: Callable[[argparse.Namespace], int], verb: str, description: str | None) -> int:
    """`python -m gemmaforge.train.<verb>`: what torchrun launches on every rank."""
    parser = argparse.ArgumentParser(prog=f"gemmaforge {verb}", description=description)
    add_arguments(parser)
    try:
        return verb_main(parser.parse_args(argv))
    except GemmaForgeError as e:
        print(f"gemmaforge {verb}: error: {e}", file=sys.stderr)
        return 2
