"""`gemmaforge <verb>`: a thin layer; each verb is one library call."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import GemmaForgeError, InputError
from .quant.cli import add_gguf_type_argument, add_quantize_arguments, quant_options
from .util.argtypes import INTEGER, NON_NEGATIVE, NON_NEGATIVE_FLOAT, POSITIVE, POSITIVE_FLOAT, PROBABILITY, Parser

# What `--dtype` offers is what the model accepts (float16 overflows), so no choice fails later.
# Names, not torch dtypes: `gemmaforge --help` must not wait for torch to import.
DTYPES = ("float32", "bfloat16")


def _dtype(name: str):
    import torch

    return getattr(torch, name)


def _info(args: argparse.Namespace) -> None:
    from .quant.cli import quant_report
    from .weights import load_model

    start = time.perf_counter()
    model = load_model(args.model, dtype=_dtype(args.dtype), **quant_options(args))
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
    from .errors import CheckpointError, TokenizerError
    from .tokenizer.tokenizer import load_tokenizer
    from .weights import export_hf, load_model, save_model
    from .weights.gguf_export import export_gguf
    from .weights.tensors import check_output

    if args.to != "gguf":
        check_output(args.output, args.force)  # before the slow load
    elif args.output.exists() and not args.force:
        raise CheckpointError(f"{args.output}: exists; pass --force to replace it")
    model = load_model(args.source, dtype=_dtype(args.dtype), **quant_options(args))
    try:
        tok = load_tokenizer(args.tokenizer or args.source)
    except TokenizerError as e:  # the weights alone are still worth converting
        tok = None
        print(f"gemmaforge convert: no tokenizer written: {e}", file=sys.stderr)
    if args.to == "gguf":
        out = export_gguf(model, args.output, args.gguf_type, tokenizer=tok, overwrite=args.force)
    else:
        out = (export_hf if args.to == "hf" else save_model)(model, args.output, tokenizer=tok, overwrite=args.force)
    print(f"wrote {args.to} checkpoint{' and tokenizer' if tok else ''} to {out}")


def _load(args: argparse.Namespace):
    import torch

    from .tokenizer.tokenizer import load_tokenizer
    from .weights import load_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.tokenizer or args.model)  # the fast check first
    return load_model(args.model, dtype=_dtype(args.dtype), **quant_options(args)), tok


def _sampling(args: argparse.Namespace):
    from .inference.sampling import Sampling

    return Sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty, args.seed)


def _generate(args: argparse.Namespace) -> None:
    from .inference.generate import generate, stream
    from .inference.speculative import SpeculationStats
    from .inference.speculative_cli import speculative_settings

    s, spec = _sampling(args), speculative_settings(args)  # bad settings fail before the model loads
    if spec and len(args.prompt) > 1:
        raise InputError(f"--speculative decodes one prompt at a time, got {len(args.prompt)} prompts")
    if spec and args.compile:
        raise InputError("--compile and --speculative cannot be combined (a compiled step decodes one token)")
    model, tok = _load(args)
    prompts = args.prompt or [sys.stdin.read().removesuffix("\n")]  # `echo ... |` adds a newline
    if len(prompts) == 1:  # one prompt streams as it is generated
        stats = SpeculationStats()
        for delta in stream(model, tok, prompts[0], args.max_new_tokens, stop=args.stop, truncate=args.truncate,
                            sampling=s, speculative=spec, stats=stats, compile=args.compile):
            print(delta, end="", flush=True)
        print()
        if spec:
            print(f"({stats.summary()})", file=sys.stderr)
        return
    texts = generate(model, tok, prompts, args.max_new_tokens, stop=args.stop, truncate=args.truncate, sampling=s,
                     compile=args.compile)
    for i, (prompt, text) in enumerate(zip(prompts, texts), 1):  # several prompts run as one batch
        print(f"=== [{i}/{len(prompts)}] {prompt}")
        print(text)


def _chat(args: argparse.Namespace) -> None:
    from .inference.chat_session import ChatSession
    from .inference.speculative_cli import speculative_settings

    sampling, spec = _sampling(args), speculative_settings(args)
    model, tok = _load(args)
    session = ChatSession(model, tok, sampling, args.max_new_tokens, args.system, speculative=spec)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {args.model}. /help lists the commands.", file=sys.stderr)
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
        elif text == "/help":
            print(CHAT_HELP, file=sys.stderr)
        elif text.startswith("/") and " " not in text:
            print(f"unknown command {text}; /help lists the commands (start a message with // to send a "
                  "literal /)", file=sys.stderr)
        elif text:
            _reply(session, text.removeprefix("/") if text.startswith("//") else text, interactive)


CHAT_HELP = """commands:
  /reset   forget the conversation so far
  /exit    leave (also /quit, Ctrl-D)
  /help    this list
Ctrl-C stops a reply without ending the chat. A message starting with // is sent with one / removed."""


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
    from .tokenizer.tokenizer import TOKENIZER_FILE
    from .tokenizer.train import run_train

    tok = run_train(args)
    print(f"wrote {args.output / TOKENIZER_FILE}: {tok.vocab_size} pieces, "
          f"<start_of_turn>={tok.start_of_turn_id}, <end_of_turn>={tok.end_of_turn_id}")


SOURCE_HELP = ("a shipped name (gemma3-270m), an HF dir, a .gguf, a .ckpt, our dir, a training checkpoint "
               "or a training run directory (its newest checkpoint)")


def _add_model_args(p: argparse.ArgumentParser, positional: str | None = None) -> None:
    if positional:
        p.add_argument(positional, help=SOURCE_HELP)
    else:
        p.add_argument("--model", default="gemma3-270m", help=SOURCE_HELP)
    p.add_argument("--tokenizer", default=None, metavar="SOURCE",
                   help="where the tokenizer comes from, if not from the model source (a tokenizer.model, or "
                        "any source above)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="weights and activations")
    add_quantize_arguments(p)


def _add_sampling_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--threads", type=POSITIVE, default=None, metavar="N",
                   help="torch threads (default: torch's choice; fewer on a busy machine)")
    p.add_argument("--max-new-tokens", type=NON_NEGATIVE, default=max_new_tokens, metavar="N",
                   help="most tokens generated per reply")
    p.add_argument("--temperature", type=NON_NEGATIVE_FLOAT, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=POSITIVE, default=None, metavar="K", help="sample among the K likeliest tokens")
    p.add_argument("--top-p", type=PROBABILITY, default=None, metavar="P",
                   help="sample among the likeliest tokens holding probability P")
    p.add_argument("--repetition-penalty", type=POSITIVE_FLOAT, default=1.0, help="> 1 discourages repeats")
    p.add_argument("--seed", type=INTEGER, default=0, help="seed of the sampling streams")


def build_parser() -> argparse.ArgumentParser:
    from .inference.speculative_cli import add_speculative_arguments

    parser = Parser(prog="gemmaforge", description=__doc__)
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
    p.add_argument("--compile", action="store_true", help="decode with one torch.compile'd program per step: "
                   "less time per token after a one-off compilation (tens of seconds; cached on disk)")
    add_speculative_arguments(p)
    p.set_defaults(run=_generate)

    p = sub.add_parser("chat", help="talk to a model in its chat format (also reads piped input)")
    _add_model_args(p)
    _add_sampling_args(p, 256)
    p.add_argument("--system", default=None, help="a system prompt, folded into the first user turn")
    add_speculative_arguments(p)
    p.set_defaults(run=_chat)

    p = sub.add_parser("tokenizer", help="tokenizer tools")
    tsub = p.add_subparsers(dest="tokenizer_verb", required=True)
    from .tokenizer.train import add_train_args

    t = tsub.add_parser("train", help="train a Gemma-style SentencePiece tokenizer on text files")
    add_train_args(t)
    t.set_defaults(run=_tokenizer_train)

    from .data.cli import add_data_arguments, data_main
    from .eval.cli import add_eval_arguments, eval_main
    from .train.preference_run import add_dpo_arguments, add_reward_arguments, dpo_main, reward_main
    from .train.pretrain import add_pretrain_arguments, pretrain_main
    from .train.rl import add_rlhf_arguments, rlhf_main
    from .train.sft import add_sft_arguments, sft_main

    p = sub.add_parser("data", help="pre-training data: prepare shards, check the default corpus")
    add_data_arguments(p)
    p.set_defaults(run=data_main)

    p = sub.add_parser("pretrain", help="pre-train a Gemma on prepared shards (torchrun for DDP/FSDP2)")
    add_pretrain_arguments(p)
    p.set_defaults(run=pretrain_main)

    p = sub.add_parser("sft", help="supervised fine-tuning: `sft --config FILE` trains (full or LoRA, torchrun "
                                   "for DDP/FSDP2); `sft select` picks responses with a judge; `sft filter` "
                                   "drops unsafe rows and masks personal data")
    add_sft_arguments(p)
    p.set_defaults(run=sft_main)
    sft_verbs = p.add_subparsers(dest="sft_verb", metavar="{select,filter}")

    p = sub.add_parser("reward", help="reward models on preference pairs: train, score")
    add_reward_arguments(p)
    p.set_defaults(run=reward_main)

    p = sub.add_parser("dpo", help="direct preference optimisation (sigmoid, IPO, robust) on preference pairs")
    add_dpo_arguments(p)
    p.set_defaults(run=dpo_main)

    p = sub.add_parser("rlhf", help="policy optimisation against a reward (RLOO, GRPO) with the batched engine")
    add_rlhf_arguments(p)
    p.set_defaults(run=rlhf_main)

    p = sub.add_parser("eval", help="evaluate a model on benchmarks (MMLU, GSM8K, HumanEval, ARC, ...)")
    add_eval_arguments(p)
    p.set_defaults(run=eval_main)

    from .rate.cli import add_rate_arguments, rate_main
    from .safety.cli import add_filter_parser
    from .selection.cli import add_select_parser

    add_select_parser(sft_verbs)
    add_filter_parser(sft_verbs)

    from .lifecycle.cli import add_pipeline_arguments, pipeline_main

    p = sub.add_parser("pipeline", help="the whole lifecycle, cached by stage: tokenizer, data, pre-training, "
                                        "SFT, preferences, reward, RLHF, evaluation and a report")
    add_pipeline_arguments(p)
    p.set_defaults(run=pipeline_main)

    p = sub.add_parser("rate", help="preference ratings: the side-by-side web page, AI labels, import, export")
    add_rate_arguments(p)
    p.set_defaults(run=rate_main)

    from .serve.cli import add_serve_arguments, serve_main

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server with continuous batching")
    _add_model_args(p)
    add_serve_arguments(p)
    p.set_defaults(run=serve_main)
    return parser


def _interrupted_at_start_up(signum: int, frame: object) -> None:
    """Ctrl-C while modules import: nothing to save, and an import cut short can surface as any
    error (numpy turns it into an ImportError), so leave at once."""
    sys.stderr.write("gemmaforge: interrupted\n")
    os._exit(130)


def main(argv: list[str] | None = None) -> int:
    verb = "gemmaforge"
    guard = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupted_at_start_up) if guard else None
    try:  # Ctrl-C at any moment ends quietly with 130
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help (0), or a bad option already explained in one line (2)
            return int(e.code or 0)
        finally:
            if guard:
                signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        verb = f"gemmaforge {args.verb}"
        run: Callable[[argparse.Namespace], int | None] = args.run
        return run(args) or 0
    except GemmaForgeError as e:
        print(f"{verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
