"""The KL coefficient β of RL: fixed, or steered towards a target KL by Ziegler et al.'s (2019,
§2.2) proportional controller, as OpenAI's lm-human-preferences (`AdaptiveKLController`) and,
after it, TRL and OpenRLHF implement it:

    e = clip(KL / target − 1, −0.2, 0.2);   β ← β · (1 + e · n / horizon)

where KL is the mean over the step's rollouts of each reply's summed per-token KL and n the number
of rollouts the step drew. Its state (β) travels in the checkpoints so a resumed run follows the
same curve.
"""

from __future__ import annotations

from dataclasses import dataclass


def adaptive_kl_update(coef: float, kl: float, target: float, n: int, horizon: float) -> float:
    """β after one step that drew `n` rollouts with mean per-reply KL `kl` (Ziegler et al. 2019)."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * n / horizon)


@dataclass
class KLController:
    """The current β; `target` None keeps it fixed."""
    value: float
    target: float | None = None
    horizon: float = 10000.0

    def update(self, kl: float, n: int) -> None:
        if self.target is not None:
            self.value = adaptive_kl_update(self.value, kl, self.target, n, self.horizon)
