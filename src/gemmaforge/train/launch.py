"""What every training verb (pretrain, sft, reward, dpo, rlhf) shares on the command line: the
common arguments, the tokenizer its checkpoints carry, a run whose Ctrl-C or SIGTERM stops after a
checkpoint (exit 130) and whose summary the main rank prints, and the `python -m` entry point
torchrun uses."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import GemmaForgeError
from ..util.argtypes import POSITIVE
from .config import TrainConfig
from .errors import Interrupted, TrainError

Run = Callable[[TrainConfig, bool], dict[str, Any]]


def add_run_arguments(parser: argparse.ArgumentParser, config_required: bool = True,
                      docs: str = "docs/training.md") -> argparse.ArgumentParser:
    parser.add_argument("--config", required=config_required, metavar="FILE", help=f"TOML training config ({docs})")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in out_dir (starts fresh if there is none)")
    parser.add_argument("--threads", type=POSITIVE, default=None, metavar="N",
                        help="torch threads per process (default: torch's choice; fewer on a busy machine)")
    return parser


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


def run_verb(args: argparse.Namespace, run: Run, verb: str, config: TrainConfig | None = None,
             show: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run a training verb from parsed arguments: 0 with the summary printed (by the main rank),
    130 when a signal stopped it after a checkpoint; bad input raises GemmaForgeError."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    main_rank = os.environ.get("RANK", "0") == "0"
    try:
        summary = run(config if config is not None else TrainConfig.load(args.config), args.resume)
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
