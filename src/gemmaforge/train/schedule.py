"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at a step, for LambdaLR.

    Step s (0-based, the step about to be taken) gets (s + 1) / warmup during warm-up, so the
    first step already moves; then the cosine runs from 1 at `warmup` to `min_ratio` at `total`
    and stays there if training goes on. It is a plain function on purpose: LambdaLR does not
    checkpoint a function's settings, so a resumed run follows the schedule of its own config
    (it may extend max_steps).
    """

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier
