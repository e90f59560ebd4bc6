"""A tiny Gemma with a trained tokenizer, and a real uvicorn server for it on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import uvicorn

import gemmaforge as gf
from gemmaforge.serve.app import Settings, create_app
from gemmaforge.serve.engine import Engine
from gemmaforge.serve.server import Server

NAME = "tiny"


def tiny_model_dir(root: Path) -> Path:
    """A tiny random Gemma 3 (vocabulary 600, context 4096) with a tokenizer trained on stdlib files."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]
    tok = gf.train_tokenizer(files, 600, root / "tok")
    torch.manual_seed(0)
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3").replace(vocab_size=600, max_seq_len=4096))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    gf.save_model(model, root / "model", tokenizer=tok)
    return root / "model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    url: str
    engine: Engine
    server: Server


@contextlib.contextmanager
def serving(model, tokenizer, settings: Settings | None = None, **engine_kw) -> Iterator[Running]:
    """The app under uvicorn in a thread, as `gemmaforge serve` runs it; stopped on exit."""
    engine = Engine(model, tokenizer, **{"max_batch": 4, "context": 1024, **engine_kw})
    port = free_port()
    config = uvicorn.Config(create_app(engine, settings or Settings(NAME)), host="127.0.0.1", port=port,
                            log_level="warning", timeout_graceful_shutdown=5)
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield Running(f"http://127.0.0.1:{port}", engine, server)
    finally:
        server.should_exit = True
        thread.join(30)
