"""Our own checkpoint format: a directory with config.json (GemmaConfig) + model.safetensors.

Training checkpoints written with `checkpoint.format = "sharded"` hold a torch.distributed.checkpoint
folder instead of model.safetensors; `load` joins its shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from ..config import GemmaConfig
from ..errors import CheckpointError, ConfigError
from ..model import Gemma
from .tensors import SHARDED, atomic_dir, build_model, read_safetensors, read_sharded

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer


def save(model: Gemma, directory: str | Path, tokenizer: Tokenizer | None = None, overwrite: bool = False) -> Path:
    """Write `model` (and `tokenizer`) to `directory` atomically; `load` gives it back bit-identically."""
    directory = Path(directory)
    with atomic_dir(directory, overwrite) as tmp:
        if tokenizer is not None:
            tokenizer.save(tmp)
        (tmp / "config.json").write_text(model.config.to_json())
        # Tied embedding: one tensor; clone so safetensors sees no shared storage.
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "gemmaforge"})
    return directory


def load(directory: Path, dtype: torch.dtype | None) -> Gemma:
    if (directory / "module.json").exists():
        raise CheckpointError(f"{directory}: a training checkpoint of more than a plain Gemma (a head, LoRA or a "
                              "frozen base; see module.json): rebuild it with gemmaforge.train.load_trained")
    weights = directory / "model.safetensors"
    if not weights.exists() and (directory / SHARDED).is_dir():
        weights = directory / SHARDED
    elif not weights.exists():
        raise CheckpointError(f"{directory}: no model.safetensors")
    try:
        cfg = GemmaConfig.from_json(directory / "config.json")
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    state = read_sharded(weights) if weights.is_dir() else read_safetensors(weights)
    stored = next(iter(state.values())).dtype if state else torch.float32
    return build_model(cfg, state, str(weights), dtype or stored)
