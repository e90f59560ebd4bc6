"""Training checkpoints back into modules, and trained modules out as plain Gemmas.

`load_trained(checkpoint)` rebuilds whatever a run trained: a plain Gemma (as `gf.load_model`
would), or a wrapper / LoRA-adapted Gemma from its module.json, starting from the frozen base's
source when the run froze one (its SHA-256 must match) and adding the checkpoint's tensors.
`to_gemma(module)` gives the Gemma inside with LoRA merged, ready for `gf.save_model` or
`gf.export_hf`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import GemmaConfig
from ..errors import GemmaForgeError
from ..model import Gemma
from ..weights.tensors import SHARDED, read_safetensors, read_sharded
from .checkpoint import is_plain, read_record
from .errors import TrainError
from .lora import apply_lora, merge_lora, settings_from_record
from .modules import backbone, frozen_hash, rebuild_wrapper


def load_trained(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The trained module of a checkpoint directory (a `step-…` folder), in eval mode."""
    from ..weights import load_model

    path = Path(path)
    record = read_record(path)
    if is_plain(record):
        return load_model(path, dtype=dtype)
    try:
        state = read_sharded(path / SHARDED) if (path / SHARDED).is_dir() else \
            read_safetensors(path / "model.safetensors")
    except GemmaForgeError as e:
        raise TrainError(f"{path}: {e}") from None
    base = record.get("base")
    if base:
        if base.get("source") is None:
            raise TrainError(f"{path}: its frozen base was not loaded from a source (model.init_from was unset), "
                             "so only the run that wrote it can use this checkpoint")
        gemma = load_model(base["source"])
    else:
        gemma = Gemma(GemmaConfig.from_json(path / "config.json"))
    if record.get("lora"):
        apply_lora(gemma, settings_from_record(record["lora"]))
    module = rebuild_wrapper(gemma, record.get("wrapper"))
    if base:
        for name, p in module.named_parameters():
            p.requires_grad_(name in state)
        if frozen_hash(module) != base["sha256"]:
            raise TrainError(f"{path}: the frozen base {base['source']!r} has changed since training "
                             "(its SHA-256 differs from the checkpoint's record)")
    try:
        module.load_state_dict(state, strict=not base)
    except RuntimeError as e:
        raise TrainError(f"{path}: tensors do not fit the recorded module ({str(e).splitlines()[0]})") from None
    return module.to(dtype=dtype).eval()


def to_gemma(module: nn.Module) -> Gemma:
    """The Gemma inside a trained module, LoRA folded into its weights (in place): a plain model for
    `gf.save_model` / `gf.export_hf`. A wrapper's own modules (heads) are not part of it."""
    return merge_lora(backbone(module))
