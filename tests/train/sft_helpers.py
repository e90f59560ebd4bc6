"""Helpers for the SFT tests: a small Gemma 3-style tokenizer (trained on the stdlib in seconds,
with the real chat tokens), tiny Gemmas over its vocabulary, and small chat JSONL files."""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

import torch

import gemmaforge as gf
from gemmaforge.model import Gemma

VOCAB = 1000


def small_tokenizer(directory: Path) -> gf.Tokenizer:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]
    return gf.train_tokenizer(files, VOCAB, directory, family=3)


def tiny_config(family: int = 3, vocab: int = VOCAB) -> gf.GemmaConfig:
    """Two layers (one sliding-window of 8, one global) of the tiny preset."""
    preset = "tiny-gemma3" if family == 3 else "tiny-gemma2"
    return gf.GemmaConfig.preset(preset).replace(vocab_size=vocab, n_layers=2, layer_types="LG")


def tiny_model(seed: int = 0, family: int = 3, vocab: int = VOCAB) -> Gemma:
    torch.manual_seed(seed)
    model = Gemma(tiny_config(family, vocab))
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    return model


def arithmetic_chats(n: int, seed: int = 0) -> list[dict]:
    """Single- and two-turn chats about small sums (a model can learn them in a few steps)."""
    rng = random.Random(seed)
    chats = []
    for i in range(n):
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        messages = [{"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]
        if i % 3 == 0:
            messages += [{"role": "user", "content": f"And plus {c}?"},
                         {"role": "assistant", "content": f"That makes {a + b + c}."}]
        chats.append({"messages": messages} if i % 4 else
                     {"prompt": messages[0]["content"], "response": messages[1]["content"]})
    return chats


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path
