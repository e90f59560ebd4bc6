"""Checkpoint formats in and out. `load_model` is the one entry point for every source."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config import GemmaConfig
from ..errors import InputError
from ..model import Gemma, check_dtype
from ..quant import Scheme, scheme_of
from ..quant import quantize as quantize_model
from . import gemma_pytorch, gguf_file, hf, native
from .sources import resolve

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer


def load_model(source: str | Path, dtype: torch.dtype | None = torch.float32,
               config: GemmaConfig | None = None, *, quantize: str | None = None,
               group_size: int | None = None, mix: str | None = None) -> Gemma:
    """Load a Gemma from a shipped name ("gemma3-270m"), an HF dir, a .gguf, a .ckpt or our dir.

    `dtype=None` keeps the stored dtype. `config` is needed only for gemma_pytorch checkpoints
    whose size matches no published preset. `quantize="int8" | "int4"` (with `group_size`, and for
    int4 `mix`: "q4_k_m" by default, or "none") returns a weight-only quantised model (gemmaforge.quant); a checkpoint
    saved quantised loads as it was saved, and asking for another scheme is an error.
    """
    if dtype is not None:
        check_dtype(dtype)
    if quantize is None and mix is not None:
        raise InputError(f"mix {mix!r} is a mix of int4 layers: pass quantize='int4' (--quantize int4) with it")
    want = None if quantize is None else Scheme.make(quantize, group_size, mix=mix)  # fails before the slow load
    src = resolve(source)
    if src.kind == "native":  # a quantised one comes back as it was saved
        model = native.load(src.path, dtype, quantize, group_size, mix)
    elif src.kind == "gguf":  # quantised block by block, never whole in float32
        model = gguf_file.load(src.path, dtype, quantize=want)
    elif src.kind == "hf":
        model = hf.load(src.path, dtype)
    else:
        model = gemma_pytorch.load(src.path, dtype, config)
    if want is None or scheme_of(model) is not None:
        return model
    return quantize_model(model, want)


def save_model(model: Gemma, directory: str | Path, *, tokenizer: Tokenizer | None = None,
               overwrite: bool = False) -> Path:
    """Our format: config.json + model.safetensors (+ `tokenizer` as tokenizer.model), written atomically.

    `directory` must not exist or be empty: anything else (a file, another checkpoint) is replaced
    only with `overwrite=True`, so a typo cannot delete the user's files."""
    return native.save(model, directory, tokenizer, overwrite)


def export_hf(model: Gemma, directory: str | Path, *, tokenizer: Tokenizer | None = None,
              overwrite: bool = False) -> Path:
    """A Hugging Face-layout directory that `transformers` loads; `tokenizer`, `overwrite` as in `save_model`."""
    return hf.export(model, directory, tokenizer, overwrite)


__all__ = ["export_hf", "load_model", "save_model"]
