"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """Multiplier of the peak learning rate at a step (a picklable LambdaLR lambda).

    Step s (0-based, the step about to be taken) gets (s + 1) / warmup during warm-up, so the
    first step already moves; afterwards the cosine runs from 1 at `warmup` to `min_ratio` at
    `total` and stays there if training goes on past `total`.
    """

    warmup: int
    total: int
    min_ratio: float

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
