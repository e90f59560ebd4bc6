"""`gemmaforge <verb>`: a thin layer; each verb is one library call."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import GemmaForgeError, InputError
from .model import SUPPORTED_DTYPES
from .quantize.cli import add_gguf_type_argument, add_quantize_arguments, quant_report

# What `--dtype` offers is what the model accepts (float16 overflows), so no choice fails later.
DTYPES = {str(d).removeprefix("torch."): d for d in SUPPORTED_DTYPES}


def _info(args: argparse.Namespace) -> None:
    from .weights import load_model

    start = time.perf_counter()
    model = load_model(args.model, dtype=DTYPES[args.dtype], **_quant(args))
    seconds = time.perf_counter() - start
    report = {"source": args.model, "config": model.config.to_dict(),
              "parameters": model.num_parameters(), "dtype": str(model.dtype).removeprefix("torch."),
              "load_seconds": round(seconds, 2), **quant_report(model)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    cfg = model.config
    print(f"{args.model}: {cfg.name or 'Gemma'} (Gemma {cfg.family} architecture)")
    print(f"  parameters  {report['parameters']:,} ({report['dtype']}"
          f"{', weights ' + report['quantization'] if report['quantization'] else ''}; "
          f"{report['weight_bytes'] / 2**20:,.1f} MiB)")
    print(f"  layers      {cfg.n_layers} ({cfg.layer_types.count('L')} sliding-window of "
          f"{cfg.sliding_window}, {cfg.layer_types.count('G')} global)" if "L" in cfg.layer_types
          else f"  layers      {cfg.n_layers}")
    print(f"  d_model     {cfg.d_model}, heads {cfg.n_heads} (kv {cfg.n_kv_heads}) x {cfg.head_dim}, "
          f"GeGLU {cfg.ffn_dim}")
    print(f"  vocabulary  {cfg.vocab_size:,}, context {cfg.max_seq_len:,}")
    print(f"  loaded in   {seconds:.2f} s")


def _convert(args: argparse.Namespace) -> None:
    from .errors import TokenizerError
    from .tokenizer import load_tokenizer
    from .weights import export_hf, load_model, save_model
    from .weights.gguf_export import export_gguf
    from .weights.tensors import check_output

    if args.to != "gguf":
        check_output(args.output, args.force)  # before the slow load
    elif args.output.exists() and not args.force:
        raise InputError(f"{args.output}: exists; pass --force to replace it")
    model = load_model(args.source, dtype=DTYPES[args.dtype], **_quant(args))
    try:
        tok = load_tokenizer(args.source)
    except TokenizerError as e:  # the weights alone are still worth converting
        tok = None
        print(f"gemmaforge convert: no tokenizer written: {e}", file=sys.stderr)
    if args.to == "gguf":
        out = export_gguf(model, args.output, args.gguf_type, tokenizer=tok, overwrite=args.force)
    else:
        out = (export_hf if args.to == "hf" else save_model)(model, args.output, tokenizer=tok, overwrite=args.force)
    print(f"wrote {args.to} checkpoint{' and tokenizer' if tok else ''} to {out}")


def _load(args: argparse.Namespace):
    from .tokenizer import load_tokenizer
    from .weights import load_model

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return load_model(args.model, dtype=DTYPES[args.dtype], **_quant(args)), load_tokenizer(args.model)


def _quant(args: argparse.Namespace) -> dict:
    return {"quantize": args.quantize, "group_size": args.group_size}


def _sampling(args: argparse.Namespace):
    from .sampling import Sampling

    return Sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)


def _generate(args: argparse.Namespace) -> None:
    from .generate import stream

    s = _sampling(args)  # bad settings fail before the model loads
    model, tok = _load(args)
    prompts = args.prompt or [sys.stdin.read().removesuffix("\n")]  # `echo ... |` adds a newline
    for prompt in prompts:
        for delta in stream(model, tok, prompt, args.max_new_tokens, s.temperature, s.top_k, s.top_p,
                            s.repetition_penalty, s.seed, stop=args.stop, truncate=args.truncate):
            print(delta, end="", flush=True)
        print()


def _chat(args: argparse.Namespace) -> None:
    from .session import ChatSession

    sampling = _sampling(args)
    model, tok = _load(args)
    session = ChatSession(model, tok, sampling, args.max_new_tokens, args.system)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {args.model}. /reset clears the history, /exit quits.", file=sys.stderr)
    while True:
        try:
            line = input("you> " if interactive else "")
        except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the prompt: leave
            if interactive:
                print()
            break
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            print("(history cleared)", file=sys.stderr)
            continue
        if not text:
            continue
        _reply(session, text, interactive)


def _reply(session, text: str, interactive: bool) -> None:
    """One turn of `chat`: bad input or Ctrl-C ends the reply, never the conversation."""
    try:
        if interactive:
            print("model> ", end="", flush=True)
        for delta in session.send(text):
            print(delta, end="", flush=True)
        print()
    except KeyboardInterrupt:
        print("\n(reply interrupted; this exchange is not kept in the history)", file=sys.stderr)
    except GemmaForgeError as e:
        print(f"\nerror: {e}", file=sys.stderr)
    if session.dropped:
        print(f"(the oldest {session.dropped} exchange(s) were dropped to fit the model's context of "
              f"{session.model.config.max_seq_len} tokens)", file=sys.stderr)


def _tokenizer_train(args: argparse.Namespace) -> None:
    from .tokenizer import TOKENIZER_FILE
    from .tokenizer_train import run_train

    tok = run_train(args)
    print(f"wrote {args.output / TOKENIZER_FILE}: {tok.vocab_size} pieces, "
          f"<start_of_turn>={tok.start_of_turn_id}, <end_of_turn>={tok.end_of_turn_id}")


def _add_model_args(p: argparse.ArgumentParser, positional: str | None = None) -> None:
    src_help = "a shipped name (gemma3-270m), an HF dir, a .gguf, a .ckpt or our dir"
    if positional:
        p.add_argument(positional, help=src_help)
    else:
        p.add_argument("--model", default="gemma3-270m", help=f"{src_help} (default: gemma3-270m)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    add_quantize_arguments(p)


def _add_sampling_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads (default: torch's choice; fewer on a busy machine)")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemmaforge", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("info", help="load a model and report its config, size and load time")
    _add_model_args(p, "model")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(run=_info)

    p = sub.add_parser("convert", help="convert a checkpoint to our format or a Hugging Face directory")
    _add_model_args(p, "source")
    p.add_argument("output", type=Path, help="directory to create, with the source's tokenizer.model (--to gguf: "
                   "one .gguf file with the vocabulary); an existing non-empty one (or a file) needs --force")
    p.add_argument("--to", choices=["gemmaforge", "hf", "gguf"], default="gemmaforge",
                   help="our format (quantised with --quantize), Hugging Face, or GGUF for llama.cpp")
    add_gguf_type_argument(p)
    p.add_argument("--force", action="store_true", help="replace what is at OUTPUT (atomically, on success)")
    p.set_defaults(run=_convert)

    p = sub.add_parser("generate", help="continue one or more prompts (streams the text)")
    p.add_argument("prompt", nargs="*", help="prompts (default: read one from standard input)")
    _add_model_args(p)
    _add_sampling_args(p, 64)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--truncate", action="store_true", help="drop the oldest prompt tokens if it is too long")
    p.set_defaults(run=_generate)

    p = sub.add_parser("chat", help="talk to a model in its chat format (also reads piped input)")
    _add_model_args(p)
    _add_sampling_args(p, 256)
    p.add_argument("--system", default=None, help="a system prompt, folded into the first user turn")
    p.set_defaults(run=_chat)

    p = sub.add_parser("tokenizer", help="tokenizer tools")
    tsub = p.add_subparsers(dest="tokenizer_verb", required=True)
    from .tokenizer_train import add_train_args

    t = tsub.add_parser("train", help="train a Gemma-style SentencePiece tokenizer on text files")
    add_train_args(t)
    t.set_defaults(run=_tokenizer_train)

    from .data.cli import add_data_arguments, data_main
    from .eval.cli import add_eval_arguments, eval_main
    from .train.pretrain import add_pretrain_arguments, pretrain_main

    p = sub.add_parser("data", help="pre-training data: prepare shards, check the default corpus")
    add_data_arguments(p)
    p.set_defaults(run=data_main)

    p = sub.add_parser("pretrain", help="pre-train a Gemma on prepared shards (torchrun for DDP/FSDP2)")
    add_pretrain_arguments(p)
    p.set_defaults(run=pretrain_main)

    p = sub.add_parser("eval", help="evaluate a model on benchmarks (MMLU, GSM8K, HumanEval, ARC, ...)")
    add_eval_arguments(p)
    p.set_defaults(run=eval_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int | None] = args.run
    try:
        return run(args) or 0
    except GemmaForgeError as e:
        print(f"gemmaforge {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
