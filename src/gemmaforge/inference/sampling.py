"""Choosing the next token from logits: greedy, temperature, top-k, top-p, repetition penalty.

Every sample has its own random stream, seeded from (seed, sample id): n copies of one prompt in a
batch give n different samples, and sample k of a batch equals the same (seed, k) generated alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens. temperature 0 means greedy (argmax); seed makes sampling reproducible."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < math.inf:  # also refuses NaN
            raise InputError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.repetition_penalty < math.inf:
            raise InputError(f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generators(self, sample_ids: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One random stream per sample, on the device the logits live on."""
        return [torch.Generator(device=device).manual_seed(sample_seed(self.seed, i)) for i in sample_ids]


def sample_seed(seed: int, sample_id: int) -> int:
    """A 63-bit seed for sample `sample_id` of a run seeded `seed` (SplitMix64 of the pair), so
    neighbouring seeds and ids give unrelated streams."""
    if sample_id < 0:
        raise InputError(f"sample ids must be >= 0, got {sample_id}")
    mask = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + sample_id + 1) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return (z ^ (z >> 31)) >> 1


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty: logits of tokens already in `seen` [B, V] (bool) move towards zero."""
    if penalty == 1.0:
        return logits
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Mask (to -inf) every token outside the top-k and outside the top-p nucleus."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        # float64: a float32 running sum over 262k probabilities loses enough to cut the nucleus short
        probs = torch.softmax(sorted_logits.double(), dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the top one stays).
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: torch.Tensor, sampling: Sampling, seen: torch.Tensor | None,
           generators: list[torch.Generator]) -> torch.Tensor:
    """Next token per row of `logits` [B, V] (float32), row i drawn from `generators[i]` so a
    sample does not depend on what else is in the batch."""
    if seen is not None:
        logits = penalise_repeats(logits, seen, sampling.repetition_penalty)
    if sampling.greedy:
        return logits.argmax(-1)
    logits = filter_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])
