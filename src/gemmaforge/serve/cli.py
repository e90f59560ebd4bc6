"""`gemmaforge serve`: argument parsing and the uvicorn run; the work is in app.py and engine.py."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

import torch

from ..errors import InputError

API_KEY_ENV = "GEMMAFORGE_API_KEY"


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="gemma3-270m",
                   help="a shipped name (gemma3-270m), an HF dir, a .gguf, a .ckpt or our dir (default: gemma3-270m)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--model-name", default=None, help="the id clients send as `model` (default: from --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV})")
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together (KV-cache rows)")
    p.add_argument("--max-queue", type=int, default=64, help="sequences waiting for a row; more get 429")
    p.add_argument("--context", type=int, default=4096,
                   help="positions per sequence, prompt and reply (capped by the model's; sizes the KV cache)")
    p.add_argument("--prefill-chunk", type=int, default=256,
                   help="prompt tokens per engine step, between decode steps of running streams")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds, queueing included")
    p.add_argument("--grace-period", type=float, default=30.0,
                   help="seconds running requests may take to finish after SIGTERM")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def model_name(source: str) -> str:
    p = Path(source)
    return (p.stem if p.suffix in (".gguf", ".ckpt") else p.name) if p.exists() else source


def _check(args: argparse.Namespace) -> None:
    for name in ("max_batch", "prefill_chunk", "max_body_bytes", "context"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_queue < 1:
        raise InputError(f"--max-queue must be >= 1, got {args.max_queue}")
    if not 0 <= args.port < 65536:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if args.request_timeout <= 0 or args.grace_period < 0:
        raise InputError("--request-timeout must be > 0 and --grace-period >= 0")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")


def serve_main(args: argparse.Namespace) -> int:
    _check(args)  # before the slow load
    try:
        from .server import run
    except ImportError as e:
        raise InputError(f"serving needs the serve extra ({e}): pip install 'gemmaforge[serve]'") from None
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
    model = load_model(args.model, dtype=getattr(torch, args.dtype)).eval()
    metrics = Metrics()
    metrics.batch_size.set(args.max_batch)
    engine = Engine(model, load_tokenizer(args.model), args.max_batch, args.context, args.max_queue,
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
