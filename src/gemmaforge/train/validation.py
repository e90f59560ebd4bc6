"""Validation as a hook of its own: the Trainer calls `evaluate(model)` every `eval.interval`
steps (and at the end) in eval mode, without gradients, under the run's autocast, and logs what it
returns. `LossValidation`, the default, is the objective's token-weighted loss on held-out batches;
a generation-based check (exact match, a judge's win rate) is another `Validation`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from .data import Padding
from .distributed import all_sum
from .objective import TOKENS, Objective


class Validation(Protocol):
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics for the current model (every rank calls it; `val_loss` feeds the summary)."""
        ...


class LossValidation:
    """Token-weighted means over this rank's validation micro-batches, summed over ranks: the loss
    (`val_loss`) and every other scalar the objective reports (`val_<name>`, e.g. a reward model's
    pairwise accuracy). A `Padding` batch runs but weighs nothing."""

    def __init__(self, objective: Objective, batches: Sequence[Any], device: torch.device) -> None:
        self.objective, self.batches, self.device = objective, batches, device

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from .loop import to_device

        names: list[str] = []
        sums: torch.Tensor | None = None
        for batch in self.batches:
            padding = isinstance(batch, Padding)
            loss, metrics = self.objective.loss(model, to_device(batch.batch if padding else batch, self.device))
            extra = {k: float(v) for k, v in metrics.items() if k != TOKENS}
            if sums is None:
                names = sorted(extra)
                sums = torch.zeros(2 + len(names), dtype=torch.float64, device=self.device)
            n = 0 if padding else metrics[TOKENS]
            sums += torch.tensor([float(loss.detach()) * n, n] + [extra[k] * n for k in names], dtype=torch.float64,
                                 device=self.device)
        if sums is None:
            return {}
        sums = all_sum(sums)
        out = {"val_loss": float(sums[0] / sums[1])}
        out.update({f"val_{k}": float(sums[2 + i] / sums[1]) for i, k in enumerate(names)})
        return out
