"""LoRA: a trainable low-rank update beside frozen Linear weights, applied from outside the model.

`apply_lora` swaps chosen `Linear` layers of a Gemma for `LoRALinear`, which holds the *same*
weight Parameter (nothing is copied) frozen, plus `lora_A` [r, in] and `lora_B` [out, r]:
y = x W^T + dropout(x) A^T B^T · alpha / r, with B = 0 at the start so training starts from the
base model exactly. Initialisation, scaling and target naming follow `peft` (tested against it).
Our own rather than peft's: peft requires transformers and accelerate at install time, and its
wrappers rename the base weights (`q_proj.base_layer.weight`), whereas here the base keeps its
names, so checkpoints, the frozen-base hash and `gf.save_model` after `merge_lora` see a plain Gemma.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model import Gemma, Linear, linear
from .errors import TrainError


@dataclass(frozen=True)
class LoraSettings:
    targets: tuple[str, ...]  # module names, their last parts ("q_proj") or globs ("layers.*.mlp.*")
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}


class LoRALinear(Linear):
    def __init__(self, base: Linear, rank: int, alpha: float, dropout: float) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # shared, not copied
        self.register_parameter("bias", None)
        self.weight.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # peft's default
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return linear(x, self.weight) + update * self.scaling

    def delta(self) -> torch.Tensor:
        """The update merged into the weight: B A · alpha / r."""
        return (self.lora_B @ self.lora_A) * self.scaling


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target) or fnmatch.fnmatchcase(name, target)


def apply_lora(gemma: Gemma, settings: LoraSettings) -> list[str]:
    """Replace the targeted Linear layers in place, freeze every other parameter of the Gemma, and
    return the names of the adapted layers. A target naming no Linear layer is an error."""
    if settings.rank < 1 or settings.alpha <= 0 or not 0 <= settings.dropout < 1:
        raise TrainError(f"lora: rank must be >= 1, alpha > 0 and dropout in [0, 1), got rank {settings.rank}, "
                         f"alpha {settings.alpha}, dropout {settings.dropout}")
    if not settings.targets:
        raise TrainError("lora.targets: name at least one module (e.g. [\"q_proj\", \"v_proj\"])")
    linears = {n: m for n, m in gemma.named_modules() if isinstance(m, Linear)}
    for target in settings.targets:
        if not any(_matches(n, target) for n in linears):
            leaves = sorted({n.rsplit(".", 1)[-1] for n in linears})
            raise TrainError(f"lora.targets: {target!r} names no Linear module of the model; its Linear modules "
                             f"are {', '.join(leaves)} (in every layer), e.g. {next(iter(linears))}")
    for p in gemma.parameters():
        p.requires_grad_(False)
    chosen = [n for n in linears if any(_matches(n, t) for t in settings.targets)]
    for name in chosen:
        parent, _, leaf = name.rpartition(".")
        owner = gemma.get_submodule(parent)
        setattr(owner, leaf, LoRALinear(linears[name], settings.rank, settings.alpha, settings.dropout))
    return chosen


def lora_layers(module: nn.Module) -> list[tuple[str, LoRALinear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
@contextlib.contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """Run `module` as its base model: every LoRA update scaled to zero for the duration (RL's and
    DPO's reference, with no second copy of the weights)."""
    layers = lora_layers(module)
    saved = [layer.scaling for _, layer in layers]
    for _, layer in layers:
        layer.scaling = 0.0
    try:
        yield
    finally:
        for (_, layer), scaling in zip(layers, saved):
            layer.scaling = scaling


@torch.no_grad()
def merge_lora(gemma: Gemma) -> Gemma:
    """Fold every adapter into its weight, in place, leaving a plain Gemma (for gf.save_model or
    gf.export_hf). The weights stay frozen; call requires_grad_() to train the merged model."""
    for name, layer in lora_layers(gemma):
        layer.weight += layer.delta().to(layer.weight.dtype)
        with torch.device("meta"):
            plain = Linear(layer.in_features, layer.out_features)
        plain.weight = layer.weight
        parent, _, leaf = name.rpartition(".")
        setattr(gemma.get_submodule(parent), leaf, plain)
    return gemma


def lora_record(gemma: Gemma) -> dict | None:
    """What a checkpoint needs to re-apply the adapters: the adapted layers by full name."""
    layers = lora_layers(gemma)
    if not layers:
        return None
    first = layers[0][1]
    rank = first.lora_A.shape[0]
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    return {"targets": [n for n, _ in layers], "rank": rank, "alpha": first.scaling * rank, "dropout": dropout}


def settings_from_record(record: dict) -> LoraSettings:
    return LoraSettings(tuple(record["targets"]), record["rank"], record["alpha"], record["dropout"])
