"""`gemmaforge serve`: argument parsing and the uvicorn run; the work is in app.py and engine.py."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from ..errors import InputError
from ..util.argtypes import NON_NEGATIVE_FLOAT, POSITIVE, POSITIVE_FLOAT, Number

API_KEY_ENV = "GEMMAFORGE_API_KEY"
PORT = Number(int, 0, 65535)
CONTEXT = Number(int, 2)  # a prompt token and a reply token at least


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The server's options (the model's own, --model/--tokenizer/--dtype, are the shared ones)."""
    p.add_argument("--model-name", default=None, help="the id clients send as `model` (default: from --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback: this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV})")
    p.add_argument("--max-batch", type=POSITIVE, default=16, metavar="N", help="sequences decoded together")
    p.add_argument("--max-queue", type=POSITIVE, default=64, metavar="N",
                   help="sequences waiting for a batch row; a request beyond it gets 429")
    p.add_argument("--context", type=CONTEXT, default=4096, metavar="N",
                   help="positions per sequence, prompt and reply (capped by the model's; sizes the KV cache)")
    p.add_argument("--prefill-chunk", type=POSITIVE, default=256, metavar="N",
                   help="prompt tokens per engine step, between decode steps of running streams")
    p.add_argument("--max-body-bytes", type=POSITIVE, default=1 << 20, metavar="N",
                   help="larger request bodies get 413 before they are parsed")
    p.add_argument("--request-timeout", type=POSITIVE_FLOAT, default=600.0, metavar="S",
                   help="seconds a request may take, queueing included")
    p.add_argument("--grace-period", type=NON_NEGATIVE_FLOAT, default=30.0, metavar="S",
                   help="seconds running requests may take to finish after SIGTERM")
    p.add_argument("--threads", type=POSITIVE, default=None, metavar="N",
                   help="torch threads (default: torch's choice)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def model_name(source: str) -> str:
    p = Path(source)
    return (p.stem if p.suffix in (".gguf", ".ckpt") else p.name) if p.exists() else source


def serve_main(args: argparse.Namespace) -> int:
    import torch

    try:
        from .server import run
    except ImportError as e:
        raise InputError(f"serving needs the serve extra ({e}): pip install 'gemmaforge[serve]'") from None
    from ..quant.cli import quant_options
    from ..tokenizer import load_tokenizer
    from ..weights import load_model
    from .app import Settings, create_app
    from .engine import Engine
    from .metrics import Metrics

    if args.threads:
        torch.set_num_threads(args.threads)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not api_key and not _loopback(args.host):
        print(f"gemmaforge serve: warning: listening on {args.host} without an API key", file=sys.stderr)
    tokenizer = load_tokenizer(args.tokenizer or args.model)  # the fast check first
    model = load_model(args.model, dtype=getattr(torch, args.dtype), **quant_options(args)).eval()
    metrics = Metrics()
    metrics.batch_size.set(args.max_batch)
    engine = Engine(model, tokenizer, args.max_batch, args.context, args.max_queue,
                    args.prefill_chunk, metrics)
    settings = Settings(args.model_name or model_name(args.model), api_key, args.max_body_bytes, args.request_timeout)
    print(f"gemmaforge serve: {settings.model_name} on http://{args.host}:{args.port}/v1 "
          f"(batch {args.max_batch}, context {engine.context})", file=sys.stderr, flush=True)
    run(create_app(engine, settings), args.host, args.port, args.grace_period, args.log_level)
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
