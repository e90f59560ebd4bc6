"""`gemmaforge eval`: the argument parser half and the run half, for the CLI to wire up.

    parser = subparsers.add_parser("eval", help="evaluate a model on benchmarks")
    add_eval_arguments(parser)
    ...
    return eval_main(args)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from ..quant.cli import add_quantize_arguments, quant_options
from ..util.argtypes import INTEGER, NON_NEGATIVE, NON_NEGATIVE_FLOAT, POSITIVE, POSITIVE_FLOAT
from .data import EvalDataError, read_jsonl
from .decontam import DEFAULT_N, contaminated_items, export_ngrams, write_ngrams
from .harness import EvalConfigError, load_tasks, run_eval
from .results import command_line
from .sandbox import SandboxConfig
from .tasks import TASKS


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="gemma3-270m",
                        help="model source: a shipped name, a checkpoint directory or a .gguf file "
                             "(default: %(default)s)")
    parser.add_argument("--tasks", required=True,
                        help=f"comma-separated task names ({', '.join(TASKS)}) or paths to .jsonl task files")
    parser.add_argument("--limit", type=POSITIVE, default=None,
                        help="evaluate a fixed seeded subset of N items per task")
    parser.add_argument("--shots", "--num-fewshot", dest="shots", type=NON_NEGATIVE, default=None,
                        help="few-shot exemplars (default: each task's standard number; see docs/eval.md)")
    parser.add_argument("--batch-size", type=POSITIVE, default=8, help="sequences per forward pass (default: 8)")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="write results.json, results.md and samples_<task>.jsonl here, after each task; "
                             "a run into a DIR with the same settings keeps its finished tasks")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in --output (and replace an existing --export-ngrams file)")
    parser.add_argument("--samples", type=POSITIVE, default=1,
                        help="completions per prompt for generation tasks, for pass@k and maj@k (default: 1)")
    parser.add_argument("--temperature", type=NON_NEGATIVE_FLOAT, default=0.0,
                        help="sampling temperature for generation tasks (default: 0, greedy)")
    parser.add_argument("--seed", type=INTEGER, default=1234)
    parser.add_argument("--chat", action="store_true",
                        help="wrap prompts in the chat template (instruction-tuned models)")
    parser.add_argument("--max-length", type=POSITIVE, default=None,
                        help="token budget per log-likelihood sequence: longer contexts lose their oldest tokens "
                             "(default: the model's context length; generation always uses it)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    add_quantize_arguments(parser)
    parser.add_argument("--threads", type=POSITIVE, default=None,
                        help="torch threads (default: torch's choice; use fewer on a busy machine)")
    parser.add_argument("--code-timeout", type=POSITIVE_FLOAT, default=SandboxConfig.timeout_s,
                        help="wall-clock seconds per generated program (default: %(default)s)")
    decon = parser.add_argument_group("decontamination (no model is loaded)")
    decon.add_argument("--export-ngrams", metavar="FILE",
                       help="write the tasks' items as n-grams (JSONL, see docs/eval.md) and exit")
    decon.add_argument("--check-corpus", metavar="FILE", nargs="+",
                       help="report which items of the tasks occur in these text/JSONL ({\"text\": …}) files")
    decon.add_argument("--ngram", type=POSITIVE, default=DEFAULT_N, help="n-gram length (default: %(default)s)")


def eval_main(args: argparse.Namespace) -> int:
    """Each numeric option's range is declared with it (`util.argtypes`); the library checks the
    same ranges again (`EvalConfig.validate`, `export_ngrams`) before any work, for API callers."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.export_ngrams or args.check_corpus:
        return _decontamination(args, tasks)
    results = run_eval(args.model, tasks, limit=args.limit, shots=args.shots, batch_size=args.batch_size,
                       output_dir=args.output, samples=args.samples, temperature=args.temperature,
                       seed=args.seed, chat=args.chat, max_length=args.max_length, dtype=args.dtype,
                       **quant_options(args),
                       threads=args.threads, sandbox=SandboxConfig(timeout_s=args.code_timeout),
                       command=command_line(), overwrite=args.overwrite)
    print(results.to_markdown())
    if args.output:
        print(f"results and per-sample logs in {args.output}")
    return 0


def _decontamination(args: argparse.Namespace, tasks: list[str]) -> int:
    corpus = _corpus_files(args.check_corpus or [])  # all before the slow n-gram export
    if args.export_ngrams and Path(args.export_ngrams).exists() and not args.overwrite:
        raise EvalConfigError(f"--export-ngrams: {args.export_ngrams} exists; pass --overwrite to replace it")
    index = export_ngrams(load_tasks(tasks), n=args.ngram)
    if args.export_ngrams:
        path = write_ngrams(index, args.export_ngrams, n=args.ngram)
        print(f"{len(index)} items, {sum(map(len, index.values()))} n-grams -> {path}")
    if args.check_corpus:
        report = contaminated_items(_corpus(corpus), index)
        for item, docs in sorted(report.items()):
            print(f"{item}\t{len(docs)} document(s), first: {docs[:5]}")
        print(f"{len(report)} of {len(index)} items found in the corpus", file=sys.stderr)
    return 0


def _corpus_files(paths: list[str]) -> list[Path]:
    """The --check-corpus files, or one line naming those that are not files."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise EvalDataError(f"--check-corpus: no such file: {', '.join(missing)}")
    return [Path(p) for p in paths]


def _corpus(paths: list[Path]) -> Iterator[str]:
    """Documents of text files (one document per file) and JSONL files (the "text" field)."""
    for p in paths:
        if p.name.endswith((".jsonl", ".jsonl.gz")):
            for _, rec in read_jsonl(p):
                yield str(rec.get("text", ""))
        else:
            yield p.read_text(encoding="utf-8", errors="replace")
