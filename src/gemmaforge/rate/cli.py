"""Command-line wiring for `gemmaforge rate serve|export|import|ai-label`; the library does the work."""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
from pathlib import Path

from ..util.argtypes import INTEGER, NON_NEGATIVE_FLOAT, POSITIVE, PROBABILITY, Number
from ..util.paths import write_atomic
from .errors import RateError

PORT = Number(int, 0, 65535)  # 0: any free port


def add_rate_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rate_command", required=True, metavar="{serve,export,import,ai-label}")
    db = {"default": Path("ratings.sqlite"), "type": Path, "help": "ratings database"}

    p = sub.add_parser("serve", help="generate responses ahead of time, then serve the side-by-side rating page",
                       description="Generates each model's response to each prompt (skipping those already in the "
                       "database), pairs them, and serves the rating page until Ctrl-C.")
    p.add_argument("--db", **db)
    p.add_argument("--prompts", type=Path, help=".jsonl ({\"prompt\"} or {\"messages\"} a line) or a text file "
                   "(one prompt a line); without it, serve the pairs already in the database")
    p.add_argument("--models", help="comma-separated model sources, at least two (e.g. gemma3-270m,runs/sft)")
    p.add_argument("--chat", action="store_true", help="wrap plain prompts as a user turn of the chat template")
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256, metavar="N", help="most tokens per response")
    p.add_argument("--batch-size", type=POSITIVE, default=8, metavar="N", help="prompts generated at once")
    p.add_argument("--temperature", type=NON_NEGATIVE_FLOAT, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=PROBABILITY, default=None, metavar="P",
                   help="sample among the likeliest tokens holding probability P")
    p.add_argument("--seed", type=INTEGER, default=0, help="seed of the sampling streams")
    p.add_argument("--threads", type=POSITIVE, default=None, metavar="N", help="torch threads for generation")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (the default answers this machine only)")
    p.add_argument("--port", type=PORT, default=8765, help="port to listen on")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(rate_func=_serve)

    p = sub.add_parser("export", help="write preference JSONL and report counts, ties and rater agreement")
    p.add_argument("--db", **db)
    p.add_argument("--out", type=Path, required=True, help="preference JSONL to write (atomically)")
    p.add_argument("--source", choices=["all", "human", "ai"], default="all", help="which ratings to export")
    p.add_argument("--include-ties", action="store_true",
                   help='also write ties and "both bad" rows, flagged by their "verdict" field')
    p.add_argument("--report", type=Path, help="also write the report as JSON here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--force", action="store_true", help="replace existing --out and --report files")
    p.set_defaults(rate_func=_export)

    p = sub.add_parser("import", help="import preference pairs (chosen/rejected JSONL, bigbench hhh_alignment) "
                       "or model responses to rate")
    p.add_argument("file", type=Path, help="a .jsonl file, or hhh_alignment's task.json (or its folder); "
                   "`hhh_alignment`, when no such path exists, is the copy that ships with gemmaforge")
    p.add_argument("--db", **db)
    p.add_argument("--format", choices=["auto", "preferences", "responses", "hhh"], default="auto",
                   help="auto: hhh for .json files and folders, else by the first row's fields")
    p.add_argument("--unlabelled", action="store_true",
                   help="import preference pairs without their labels, for raters to rate")
    p.add_argument("--limit", type=POSITIVE, default=None, metavar="N",
                   help="import only the first N rows (pairs, or responses) of the file: a quick try")
    p.set_defaults(rate_func=_import)

    p = sub.add_parser("ai-label", help="label every pair with a side-by-side AI judge (stored as rater ai:NAME)")
    p.add_argument("--db", **db)
    p.add_argument("--judge", required=True, help="judge source (a model source or an OpenAI-compatible endpoint)")
    p.add_argument("--judge-model", default=None, help="model name at the judge's endpoint")
    p.add_argument("--template", default=None, help="judge prompt template")
    p.add_argument("--batch-size", type=POSITIVE, default=8, metavar="N", help="pairs per call to the judge")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(rate_func=_ai_label)


def rate_main(args: argparse.Namespace) -> int | None:
    return args.rate_func(args)


def _store(args: argparse.Namespace, create: bool = True):
    from .store import RatingStore

    return RatingStore(args.db, create)


def _check_port(host: str, port: int) -> None:
    """Fails before any generation if the address is taken (uvicorn would only say so at the end)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise RateError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def _serve(args: argparse.Namespace) -> None:
    import torch
    import uvicorn

    from .lock import serve_lock
    from .prompts import read_prompts
    from .responses import GenerationSettings, generate_responses
    from .server import LOOPBACK, create_app

    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    if args.prompts and len(set(models)) < 2:
        raise RateError("--prompts needs --models with at least two different model sources, comma-separated")
    if models and not args.prompts:
        raise RateError("--models needs --prompts (the prompts to answer)")
    settings = GenerationSettings(args.max_new_tokens, args.batch_size, args.temperature, args.top_p, args.seed)
    prompts = read_prompts(args.prompts, args.chat) if args.prompts else []
    store = _store(args, create=bool(prompts))
    _check_port(args.host, args.port)
    url = f"http://{args.host}:{args.port}/"
    with serve_lock(store.path, url):
        if prompts:
            if args.threads:
                torch.set_num_threads(args.threads)
            generate_responses(store, prompts, list(dict.fromkeys(models)), settings, not args.no_progress)
            added, identical = store.pair_models(models)
            print(f"{added} new pairs" + (f" ({identical} skipped: identical responses)" if identical else ""))
        counts = store.counts()
        if not counts["pairs"]:
            raise RateError(f"{store.path}: no pairs to rate" + (": the models answered every prompt identically"
                            if prompts else "; give --prompts and --models, or `rate import` some"))
        print(f"{counts['pairs']} pairs of {counts['prompts']} prompts, {counts['ratings']} ratings so far")
        print(f"rating page: {url}  (Ctrl-C to stop)", flush=True)
        hosts = LOOPBACK if args.host in LOOPBACK else None  # on loopback, only loopback names
        uvicorn.run(create_app(store, hosts), host=args.host, port=args.port, log_level="warning")


def _export(args: argparse.Namespace) -> None:
    from .prefs import preference_rows, write_jsonl
    from .report import format_report, summarize

    for path in (args.out, args.report):
        if path is not None and path.exists() and not args.force:
            raise RateError(f"{path} already exists; pass --force to replace it")
    ratings = [r for r in _store(args, create=False).ratings() if args.source in ("all", r["source"])]
    written = write_jsonl(args.out, preference_rows(ratings, args.include_ties))
    report = summarize(ratings, written)
    if args.report:
        write_atomic(args.report, (json.dumps(report, indent=2) + "\n").encode())
    print(json.dumps(report, indent=2) if args.json else format_report(report))


def _import(args: argparse.Namespace) -> None:
    from ..util.jsonl import read_jsonl
    from .prefs import SHIPPED_HHH, import_preferences, import_responses, read_hhh, read_preferences, read_responses

    fmt, path = args.format, args.file
    if str(path) == "hhh_alignment" and not path.exists():
        path = SHIPPED_HHH
    if fmt == "auto":
        if path.is_dir() or path.suffix == ".json":
            fmt = "hhh"
        else:
            first = next(read_jsonl(path, RateError), (0, {}))[1]
            fmt = "responses" if "response" in first else "preferences"
    if fmt == "responses":
        result = import_responses(_store(args), read_responses(path)[:args.limit])
    else:
        rows = read_hhh(path) if fmt == "hhh" else read_preferences(path)
        result = import_preferences(_store(args), rows[:args.limit], labels=not args.unlabelled)
    print(f"imported {path} as {fmt}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items()))


def _ai_label(args: argparse.Namespace) -> None:
    from .ai import label_with_judge

    if importlib.util.find_spec("gemmaforge.judge") is None:
        raise RateError("this gemmaforge has no side-by-side judge (gemmaforge.judge) yet")
    from ..judge import load_judge

    store = _store(args, create=False)
    judge = load_judge(args.judge, model_name=args.judge_model, template=args.template)
    result = label_with_judge(store, judge, args.batch_size, not args.no_progress)
    v = result["verdicts"]
    print(f"{result['rater']}: labelled {result['labelled']} pairs (a {v['a']}, b {v['b']}, tie {v['tie']})")
