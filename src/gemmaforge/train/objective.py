"""The contract between the training loop and what it optimises, and the pre-training objective.

An objective turns one micro-batch into a loss; the Trainer does everything else (optimizer,
accumulation, precision, checkpoints, distribution, metrics) without knowing what a batch holds.
SFT, reward modelling, RLHF and DPO plug in as further `Objective`s.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .errors import TrainError
from .losses import chunked_cross_entropy
from .modules import backbone

TOKENS = "tokens"  # metrics key: how many tokens the loss averages over


class Objective(Protocol):
    """What every objective provides; `check_objective` verifies it once, before training starts."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Mean loss of one micro-batch and scalar metrics, which must include TOKENS.

        `model` is the training module (maybe DDP/FSDP-wrapped; call it, and reach the Gemma
        inside with `modules.backbone`). `batch` is whatever the objective's data yields, already
        on the device. Metrics under TOKENS (the tokens this loss averages over) are summed over
        micro-batches and ranks (for throughput and token-weighted validation); every other
        metric is averaged.
        """
        ...

    def tokens(self, batch: Any) -> int:
        """The tokens `loss(batch)` averages over, counted without a forward pass. The Trainer
        weights each micro-batch's loss by its share of the step's tokens on all ranks, so
        accumulation and data parallelism optimise the same per-token mean as one big batch
        (SFT's masked prompts and padding make micro-batches differ)."""
        ...


def check_objective(objective: Any) -> None:
    """Refuse, in one line, an objective that lacks part of the protocol."""
    missing = [f"{name}(...)" for name in ("loss", "tokens") if not callable(getattr(objective, name, None))]
    if missing:
        raise TrainError(f"{type(objective).__name__} is not an Objective: it lacks {' and '.join(missing)} "
                         "(see gemmaforge.train.objective.Objective)")


def check_metrics(objective: Any, metrics: dict) -> None:
    if TOKENS not in metrics:
        raise TrainError(f"{type(objective).__name__}.loss must report the tokens it averaged over as "
                         f"metrics[{TOKENS!r}]; it returned {sorted(metrics)}")


class NextTokenObjective:
    """Pre-training: predict token t+1 from tokens ≤ t over blocks of seq_len + 1 tokens."""

    def __init__(self, chunk_size: int | None = None) -> None:
        self.chunk_size = chunk_size

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        hidden = model(inputs, logits_at="none")
        gemma = backbone(model)
        loss = chunked_cross_entropy(hidden, gemma.embed.weight, targets, gemma.config.final_softcap,
                                     self.chunk_size)
        return loss, {TOKENS: float(targets.numel())}

    def tokens(self, batch: torch.Tensor) -> int:
        return batch[:, 1:].numel()
