"""`gemmaforge sft select`: the argument parser half and the run half, for the CLI to wire up."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..util.argtypes import NON_NEGATIVE, POSITIVE, POSITIVE_FLOAT, PROBABILITY


def add_select_parser(sft_subparsers: argparse._SubParsersAction) -> None:
    """`select` under the `sft` verb's subcommands."""
    p = sft_subparsers.add_parser("select", help="answer prompts with several candidates, judge them side by "
                                  "side, keep the best")
    add_select_arguments(p)
    p.set_defaults(run=select_main, verb="sft select")


def add_select_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompts", required=True, type=Path, metavar="FILE",
                   help='JSONL: {"prompt": ...} or {"messages"|"input": [...]}, optional "reference"/"ideal", '
                        '"responses": {name: text}, "id"')
    p.add_argument("--candidates", action="append", default=None, metavar="SRC[,SRC...]",
                   help="model sources (SRC@temperature=0.7,top_p=0.9 for a sampling setting), or input:NAME for "
                        "responses in the prompts file; repeatable (default: every response name in the file)")
    p.add_argument("--judge", default="gemma3-270m", metavar="SRC",
                   help="a model source, or an OpenAI-compatible endpoint http://host:port/v1")
    p.add_argument("--judge-model", default=None, metavar="NAME", help="the endpoint's model name")
    p.add_argument("--judge-template", default=None, type=Path, metavar="FILE",
                   help="judging prompt with $question, $answer_a, $answer_b (and optionally $reference)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the endpoint's key")
    p.add_argument("--judge-retries", type=NON_NEGATIVE, default=4, metavar="N",
                   help="retries of a failed endpoint request, with exponential backoff")
    p.add_argument("--judge-timeout", type=POSITIVE_FLOAT, default=60.0, metavar="S",
                   help="seconds to wait for one endpoint answer")
    p.add_argument("--output", required=True, type=Path, metavar="DIR",
                   help="where results go; rerunning with the same DIR resumes")
    p.add_argument("--limit", type=POSITIVE, default=None, metavar="N", help="only the first N prompts")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256, metavar="N", help="most tokens per response")
    p.add_argument("--batch-size", type=POSITIVE, default=8, metavar="N", help="prompts per generation batch")
    p.add_argument("--judge-batch-size", type=POSITIVE, default=4, metavar="N", help="judging prompts per forward")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=POSITIVE, default=None, metavar="N", help="torch threads")
    p.add_argument("--safety", choices=["on", "off"], default="on",
                   help="drop unsafe or personal-data pairs with gemmaforge.safety (the next-ranked response "
                        "is selected instead; docs/safety.md)")
    p.add_argument("--safety-threshold", type=PROBABILITY, default=None, metavar="P",
                   help="unsafe probability at which a pair drops (default: the classifier's own)")


def select_main(args: argparse.Namespace) -> int:
    from ..judge import load_judge
    from .select import SelectOptions, run_select

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    def judge():
        return load_judge(args.judge, model_name=args.judge_model, template=args.judge_template,
                          api_key_env=args.api_key_env, batch_size=args.judge_batch_size, dtype=dtype,
                          retries=args.judge_retries, timeout_s=args.judge_timeout)

    options = SelectOptions(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit,
                            dtype=dtype)
    filter_fn = None
    if args.safety == "on":
        from ..safety.filter import pair_filter

        filter_fn = pair_filter(args.safety_threshold)
    summary = run_select(args.prompts, args.candidates, judge, args.output, options, filter_fn=filter_fn)
    print(f"selected {summary['selected_pairs']} of {summary['prompts']} prompts; "
          f"{summary['pairs_judged']} pairs judged; position-flip rate "
          f"{_pct(summary['position_flip_rate'])}; see {args.output / 'summary.md'}")
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
