"""The contract between the training loop and what it optimises, and the pre-training objective.

An objective turns one micro-batch into a loss; the Trainer does everything else (optimizer,
accumulation, precision, checkpoints, distribution, metrics) without knowing what a batch holds.
SFT, reward modelling, RLHF and DPO plug in as further `Objective`s.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .losses import chunked_cross_entropy
from .parallelize import unwrap

TOKENS = "tokens"  # metrics key: how many tokens the loss averages over


class Objective(Protocol):
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Mean loss of one micro-batch and scalar metrics.

        `model` is the training module (maybe DDP/FSDP-wrapped; call it, and reach the Gemma
        inside with `parallelize.unwrap`). `batch` is whatever the objective's data yields, already
        on the device. Metrics under TOKENS are summed over micro-batches and ranks (for
        throughput and token-weighted validation); every other metric is averaged.

        An objective whose micro-batches score different numbers of tokens (SFT's masked
        prompts, padding) also defines `tokens(batch) -> int`, counted without a forward pass:
        the Trainer then weights each micro-batch's loss by its share of the step's tokens on all
        ranks, so accumulation and data parallelism optimise the same per-token mean as one big
        batch. Without it every micro-batch's mean counts equally (exact for fixed-size blocks).
        """
        ...


class NextTokenObjective:
    """Pre-training: predict token t+1 from tokens ≤ t over blocks of seq_len + 1 tokens."""

    def __init__(self, chunk_size: int | None = None) -> None:
        self.chunk_size = chunk_size

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        inputs, targets = batch[:, :-1], batch[:, 1:]
        hidden = model(inputs, logits_at="none")
        gemma = unwrap(model)
        loss = chunked_cross_entropy(hidden, gemma.embed.weight, targets, gemma.config.final_softcap,
                                     self.chunk_size)
        return loss, {TOKENS: float(targets.numel())}
