"""`gemmaforge <verb>`: a thin layer; each verb is one library call."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

import torch

from .errors import GemmaForgeError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _info(args: argparse.Namespace) -> None:
    from .weights import load_model

    start = time.perf_counter()
    model = load_model(args.model, dtype=DTYPES[args.dtype])
    seconds = time.perf_counter() - start
    report = {"source": args.model, "config": model.config.to_dict(),
              "parameters": model.num_parameters(), "dtype": str(model.dtype).removeprefix("torch."),
              "load_seconds": round(seconds, 2)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    cfg = model.config
    print(f"{args.model}: {cfg.name or 'Gemma'} (Gemma {cfg.family} architecture)")
    print(f"  parameters  {report['parameters']:,} ({report['dtype']})")
    print(f"  layers      {cfg.n_layers} ({cfg.layer_types.count('L')} sliding-window of "
          f"{cfg.sliding_window}, {cfg.layer_types.count('G')} global)" if "L" in cfg.layer_types
          else f"  layers      {cfg.n_layers}")
    print(f"  d_model     {cfg.d_model}, heads {cfg.n_heads} (kv {cfg.n_kv_heads}) x {cfg.head_dim}, "
          f"GeGLU {cfg.ffn_dim}")
    print(f"  vocabulary  {cfg.vocab_size:,}, context {cfg.max_seq_len:,}")
    print(f"  loaded in   {seconds:.2f} s")


def _convert(args: argparse.Namespace) -> None:
    from .weights import export_hf, load_model, save_model

    model = load_model(args.source, dtype=DTYPES[args.dtype])
    out = (export_hf if args.to == "hf" else save_model)(model, args.output)
    print(f"wrote {args.to} checkpoint to {out}")


def _add_model_args(p: argparse.ArgumentParser, positional: str | None = None) -> None:
    if positional:
        p.add_argument(positional, help="a shipped name (gemma3-270m), an HF dir, a .gguf, a .ckpt or our dir")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemmaforge", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("info", help="load a model and report its config, size and load time")
    _add_model_args(p, "model")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(run=_info)

    p = sub.add_parser("convert", help="convert a checkpoint to our format or a Hugging Face directory")
    _add_model_args(p, "source")
    p.add_argument("output", help="directory to write (replaced atomically)")
    p.add_argument("--to", choices=["gemmaforge", "hf"], default="gemmaforge")
    p.set_defaults(run=_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except GemmaForgeError as e:
        print(f"gemmaforge {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
