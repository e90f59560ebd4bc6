"""Our own checkpoint format: a directory with config.json (GemmaConfig) + model.safetensors.

Training checkpoints written with `checkpoint.format = "sharded"` hold a torch.distributed.checkpoint
folder instead of model.safetensors; `load` joins its shards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from ..config import GemmaConfig
from ..errors import CheckpointError, ConfigError, InputError
from ..model import Gemma
from ..quant import Scheme, check_requested, scheme_of
from ..quant.checkpoint import QUANTIZATION, load_quantized
from .tensors import SHARDED, atomic_dir, build_model, read_safetensors, read_sharded

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer


def save(model: Gemma, directory: str | Path, tokenizer: Tokenizer | None = None, overwrite: bool = False) -> Path:
    """Write `model` (and `tokenizer`) to `directory` atomically; `load` gives it back bit-identically."""
    directory = Path(directory)
    with atomic_dir(directory, overwrite) as tmp:
        if tokenizer is not None:
            tokenizer.save(tmp)
        config = model.config.to_dict()
        if (scheme := scheme_of(model)) is not None:  # the codes are saved as they are
            config[QUANTIZATION] = scheme.to_dict()
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        # Tied embedding: one tensor; clone so safetensors sees no shared storage.
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "gemmaforge"})
    return directory


def read_config(directory: Path) -> tuple[GemmaConfig, Scheme | None]:
    """config.json: the GemmaConfig, and the quantisation scheme a quantised checkpoint records."""
    path = directory / "config.json"
    try:
        d = json.loads(path.read_text())
        quant = d.pop(QUANTIZATION, None)
        return GemmaConfig.from_dict(d), None if quant is None else Scheme.from_dict(quant)
    except (ConfigError, InputError, TypeError, KeyError, AttributeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror}") from None


def load(directory: Path, dtype: torch.dtype | None, quantize: str | None = None,
         group_size: int | None = None, mix: str | None = None) -> Gemma:
    """Our checkpoint; a quantised one is built from its codes directly (no float weights on the way)."""
    if (directory / "module.json").exists():
        raise CheckpointError(f"{directory}: a training checkpoint of more than a plain Gemma (a head, LoRA or a "
                              "frozen base; see module.json): rebuild it with gemmaforge.train.load_trained")
    weights = directory / "model.safetensors"
    if not weights.exists() and (directory / SHARDED).is_dir():
        weights = directory / SHARDED
    elif not weights.exists():
        raise CheckpointError(f"{directory}: no model.safetensors")
    cfg, scheme = read_config(directory)
    if scheme is not None:
        check_requested(scheme, quantize, group_size, mix, str(directory))
        return load_quantized(weights, cfg, scheme, dtype or torch.float32)
    state = read_sharded(weights) if weights.is_dir() else read_safetensors(weights)
    stored = next(iter(state.values())).dtype if state else torch.float32
    return build_model(cfg, state, str(weights), dtype or stored)
