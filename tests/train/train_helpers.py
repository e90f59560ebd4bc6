"""Helpers for the training tests: a small learnable token corpus and TOML configs around it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gemmaforge.lifecycle.launch import STANDALONE

SRC = Path(__file__).resolve().parents[2] / "src"


def make_corpus(directory: Path, vocab: int = 512, tokens: int = 24_000, seed: int = 0) -> tuple[Path, Path]:
    """train.bin / val.bin: rotations of one random 64-token motif, so a tiny model learns fast."""
    rng = np.random.default_rng(seed)
    motif = rng.integers(0, vocab, 64)
    stream = np.concatenate([np.roll(motif, rng.integers(0, 64)) for _ in range(tokens // 64)]).astype("<u4")
    cut = len(stream) * 9 // 10
    directory.mkdir(parents=True, exist_ok=True)
    stream[:cut].tofile(directory / "train.bin")
    stream[cut:].tofile(directory / "val.bin")
    return directory / "train.bin", directory / "val.bin"


def config_table(tmp: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A tiny, fast run (tiny-gemma-mqa, seq 32, 16 sequences a step); `sections` override fields."""
    train, val = make_corpus(tmp / "data")
    table: dict[str, Any] = {
        "out_dir": str(tmp / "run"),
        "model": {"preset": "tiny-gemma-mqa"},
        "data": {"train": str(train), "val": str(val), "seq_len": 32},
        "optim": {"lr": 3e-3, "warmup_steps": 3},
        "train": {"max_steps": 6, "global_batch": 16, "micro_batch": 4},
        "eval": {"interval": 3, "blocks": 16},
        "checkpoint": {"interval": 3, "keep": 2},
        "log": {"progress": False, "peak_tflops": 0.1},
    }
    for name, fields in sections.items():
        if isinstance(fields, dict):
            table[name] = {**table.get(name, {}), **fields}
        else:
            table[name] = fields
    return table


def to_toml(table: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return repr(v).lower() if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else repr(v))

    top = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    tables = [f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
              for k, v in table.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def write_config(tmp: Path, name: str = "run.toml", **sections: dict[str, Any]) -> Path:
    path = tmp / name
    path.write_text(to_toml(config_table(tmp, **sections)))
    return path


def subprocess_env() -> dict[str, str]:
    """One thread per process: deterministic and kind to a shared 2-core machine."""
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1"}


def run_pretrain(config: Path, *extra: str, torchrun: int = 0, **kw: Any) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", *STANDALONE, f"--nproc-per-node={torchrun}"] \
        if torchrun else [sys.executable]
    return subprocess.run([*launcher, "-m", "gemmaforge.train.pretrain", "--config", str(config), *extra],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120, **kw)
