"""`gemmaforge pipeline`: the whole lifecycle from one command (docs/pipeline.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..util.argtypes import POSITIVE


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML overriding keys of the embedded default (gemmaforge/lifecycle/default.toml)")
    p.add_argument("--output", type=Path, default=Path("runs/pipeline"), metavar="DIR",
                   help="run directory; a rerun skips finished stages (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: the whole lifecycle in a few minutes")
    p.add_argument("--from", dest="start", default=None, metavar="STAGE", help="re-run STAGE and every stage after it")
    p.add_argument("--only", default=None, metavar="STAGE", help="re-run STAGE alone (its inputs must be finished)")
    p.add_argument("--base", default=None, metavar="MODEL",
                   help="post-train this model (e.g. gemma3-270m, with LoRA) instead of a tokenizer and pre-training")
    p.add_argument("--data-backend", choices=("local", "ray"), default="local",
                   help="how the data stage runs: local processes or ray.data (same shards either way)")
    p.add_argument("--nproc", type=POSITIVE, default=1, metavar="N",
                   help="processes per training stage: N > 1 launches pretrain, sft, reward and rlhf under torchrun "
                        "(DDP; gloo on CPU) from the same config")
    p.add_argument("--human", action="store_true", help="collect the preference pairs on the rating page")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def pipeline_main(args: argparse.Namespace) -> int:
    from .runner import PipelineOptions, run_pipeline

    states = run_pipeline(PipelineOptions(args.output, args.config, args.quick, args.start, args.only, args.base,
                                          human=args.human, data_backend=args.data_backend,
                                          nproc=args.nproc, progress=args.progress))
    for name, st in states.items():
        print(f"{name:10s} {st['status']:8s} {st['dir']}")
    print(f"report: {args.output / 'report.html'} (and report.json)")
    return 0
