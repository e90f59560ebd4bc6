"""`gemmaforge sft filter`: argument parsing and main; the work is `filter_pairs`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ..util.argtypes import POSITIVE, Number
from ..util.paths import writable_dir
from .filter import PII_MODES, filter_pairs
from .report import OUTPUTS, write_outputs
from .rows import read_rows


def add_filter_parser(sft_subparsers: argparse._SubParsersAction) -> None:
    """`filter` under the `sft` verb's subcommands."""
    p = sft_subparsers.add_parser("filter", help="drop unsafe rows and mask personal data, every drop with a reason")
    add_filter_arguments(p)
    p.set_defaults(run=filter_main, verb="sft filter")


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=Path, required=True,
                   help='chat JSONL ({"messages": [...]}) or prompt/response JSONL')
    p.add_argument("--output", type=Path, required=True,
                   help="directory for kept.jsonl, drops.jsonl, report.json, report.md")
    p.add_argument("--threshold", type=Number(float, 0.0, 1.0), default=None, metavar="P",
                   help="drop a row whose unsafe probability is >= this (default: the shipped head's)")
    p.add_argument("--pii", choices=PII_MODES, default="mask",
                   help="personal data (e-mail, phone, Luhn-valid card numbers): mask it, drop the row, "
                        "or leave it")
    p.add_argument("--force", action="store_true", help="replace the outputs of an earlier run in --output")
    p.add_argument("--batch-size", type=POSITIVE, default=16, metavar="N", help="pairs per forward pass")
    p.add_argument("--threads", type=POSITIVE, default=None, metavar="N", help="torch threads")


def filter_main(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    if not args.input.is_file():
        raise InputError(f"--input {args.input}: no such file")
    out = writable_dir(args.output, InputError, "--output")
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not args.force:
        raise InputError(f"{out / existing[0]} already exists; pass --force to replace the outputs")
    parsed = list(read_rows(args.input))  # every row checked before the model loads
    result = filter_pairs([row for _, row in parsed], threshold=args.threshold, pii=args.pii,
                          lines=[line for line, _ in parsed], batch_size=args.batch_size, progress=True)
    report = write_outputs(result, out, str(args.input), args.pii)
    reasons = ", ".join(f"{k} {v}" for k, v in report["drops_by_reason"].items()) or "none"
    print(f"{report['rows']} rows: {report['kept']} kept, {report['dropped']} dropped ({reasons}); "
          f"wrote {out}/")
