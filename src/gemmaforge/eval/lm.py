"""What the harness needs from a model: two batched calls, on text.

Tasks speak text; the model side owns tokenisation, the BOS token and any chat template, so a
task can be scored by gemmaforge, by another engine, or by a fake in tests without changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LoglikRequest:
    """Score `continuation` given `context` (the continuation usually starts with a space)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikResult:
    logprob: float  # sum of log-probabilities of the continuation's tokens
    greedy: bool  # whether every continuation token was the argmax
    n_tokens: int
    context_dropped: int = 0  # oldest context tokens cut to fit the model's budget (0: it saw them all)


@dataclass(frozen=True)
class GenerateRequest:
    """Continue `prompt` until a stop string or `max_new_tokens`; `n` samples per prompt."""

    prompt: str
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    n: int = 1
    seed: int = 0
    # Passed through to the engine (e.g. top_p); keeps requests hashable for grouping.
    options: tuple[tuple[str, float], ...] = field(default=())


@runtime_checkable
class LanguageModel(Protocol):
    """A model the harness can evaluate. Both calls take the whole workload so that the
    implementation can batch it, reorder it, and share work between requests."""

    name: str

    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[LoglikResult]:
        """One result per request, in request order."""
        ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[str]]:
        """For each request, its `n` completions (the prompt and stop string excluded)."""
        ...
