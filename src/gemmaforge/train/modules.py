"""What the Trainer trains: a Gemma, or a module around one, and which of its parameters train.

A *wrapper* holds its Gemma as `.gemma` and adds modules of its own (a reward model's scalar head,
a value head). It declares `kind` (a name registered in `WRAPPERS`), `module_config()` (a JSON
dict) and `from_config(gemma, config)`, so a checkpoint records what it is and `load_trained`
rebuilds it. LoRA adapters are not a wrapper: they replace Linear layers inside the Gemma
(`train/lora.py`) and the checkpoint records their settings beside the wrapper's.

Parameters are frozen by name (`freeze`); a run whose module has frozen parameters checkpoints
only the trainable ones plus a reference to the frozen base: the source it was loaded from and a
SHA-256 of its frozen tensors, checked again whenever the checkpoint is resumed or rebuilt.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from ..model import Gemma
from ..util.residency import release
from .errors import TrainError


def backbone(module: nn.Module) -> Gemma:
    """The Gemma a trained module is built around (the module itself when it is one)."""
    from .parallelize import unwrap

    module = unwrap(module)
    if isinstance(module, Gemma):
        return module
    gemma = getattr(module, "gemma", None)
    if isinstance(gemma, Gemma):
        return gemma
    raise TrainError(f"cannot train a {type(module).__name__}: a trained module must be a Gemma or hold one "
                     "as its `.gemma` attribute")


class ModelWithHead(nn.Module):
    """A Gemma with a linear head on one pooled hidden state per sequence: `model(ids, mask) ->
    [B, n_out]`. The head reads the last real token ("last", as reward models do) or the mean over
    real tokens ("mean")."""

    kind: ClassVar[str] = "head"

    def __init__(self, gemma: Gemma, n_out: int = 1, pool: str = "last") -> None:
        super().__init__()
        if pool not in ("last", "mean"):
            raise TrainError(f"head pool must be 'last' or 'mean', got {pool!r}")
        self.gemma, self.n_out, self.pool = gemma, n_out, pool
        self.head = nn.Linear(gemma.config.d_model, n_out)
        self.head.to(gemma.embed.weight.device, gemma.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.gemma(input_ids, attention_mask=attention_mask, logits_at="none")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.dtype)
        if self.pool == "mean":
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        else:  # the last real token, whatever the padding side
            last = (mask * torch.arange(1, mask.shape[1] + 1, device=mask.device)).argmax(1)
            pooled = hidden[torch.arange(len(hidden), device=hidden.device), last]
        return self.head(pooled)

    def module_config(self) -> dict[str, Any]:
        return {"n_out": self.n_out, "pool": self.pool}

    @classmethod
    def from_config(cls, gemma: Gemma, config: dict[str, Any]) -> ModelWithHead:
        return cls(gemma, **config)


class PolicyWithValue(nn.Module):
    """PPO's actor-critic on one trunk: the Gemma as the policy, plus a linear value head on every
    position's final hidden state. `model(ids, attention_mask, logits_at="none")` gives the hidden
    states like the Gemma; with `with_values=True` also the values [B, T] (one forward, so DDP sees
    the head used)."""

    kind: ClassVar[str] = "policy_value"

    def __init__(self, gemma: Gemma) -> None:
        super().__init__()
        self.gemma = gemma
        self.value_head = nn.Linear(gemma.config.d_model, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(gemma.embed.weight.device, gemma.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, logits_at: str = "none",
                with_values: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        hidden = self.gemma(input_ids, attention_mask=attention_mask, logits_at="none")
        out = hidden if logits_at == "none" else self.gemma.logits(hidden)
        return (out, self.value_head(hidden)[..., 0].float()) if with_values else out

    def module_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, gemma: Gemma, config: dict[str, Any]) -> PolicyWithValue:
        return cls(gemma)


WRAPPERS: dict[str, Any] = {ModelWithHead.kind: ModelWithHead, PolicyWithValue.kind: PolicyWithValue}


def register_wrapper(cls: Any) -> Any:
    """Class decorator: make a wrapper kind rebuildable from checkpoints."""
    WRAPPERS[cls.kind] = cls
    return cls


def wrapper_record(module: nn.Module) -> dict[str, Any] | None:
    """{"kind", "config"} of a wrapper; None for a bare Gemma."""
    if isinstance(module, Gemma):
        return None
    kind = getattr(module, "kind", None)
    if kind not in WRAPPERS or not hasattr(module, "module_config"):
        raise TrainError(f"{type(module).__name__}: a wrapper must declare `kind` (one of {sorted(WRAPPERS)}, or "
                         "registered with register_wrapper) and `module_config()` so checkpoints can rebuild it")
    return {"kind": kind, "config": module.module_config()}


def rebuild_wrapper(gemma: Gemma, record: dict[str, Any] | None) -> nn.Module:
    if record is None:
        return gemma
    if record["kind"] not in WRAPPERS:
        raise TrainError(f"unknown wrapper kind {record['kind']!r}; known: {', '.join(sorted(WRAPPERS))}")
    return WRAPPERS[record["kind"]].from_config(gemma, record["config"])


def freeze(module: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Freeze the parameters whose names match any glob pattern (e.g. "gemma.*"); return their
    names. A pattern that matches nothing is an error naming a few parameters that exist."""
    names = [n for n, _ in module.named_parameters()]
    frozen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise TrainError(f"model.freeze: {pattern!r} names no parameter (they are named like "
                             f"{', '.join(names[:2])}, ..., {names[-1]})")
        frozen.update(hits)
    for name, p in module.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return sorted(frozen)


def trainable_names(module: nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


HASH_SLICE = 1 << 26  # bytes hashed, then released, at a time


def frozen_hash(module: nn.Module) -> str:
    """SHA-256 over the frozen parameters (name, dtype, shape, bytes): identifies the base.

    Memory-mapped weights are released slice by slice once hashed, so the pass does not leave
    the whole base resident (what training never reads again, it never pays for)."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters()):
        if p.requires_grad:
            continue
        t = p.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        raw = t.reshape(-1).view(torch.uint8)
        for at in range(0, len(raw), HASH_SLICE):
            piece = raw[at:at + HASH_SLICE]
            h.update(piece.numpy())
            release(piece)
    return h.hexdigest()
