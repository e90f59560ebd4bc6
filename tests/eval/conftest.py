"""Fakes for testing the harness without a real model: scripted language models and a
character-level tokenizer for tiny random Gemmas."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from gemmaforge.eval.lm import GenerateRequest, LoglikRequest, LoglikResult


class ScriptedLM:
    """A `LanguageModel` whose answers come from Python functions; records every call."""

    name = "scripted"

    def __init__(self, score: Callable[[LoglikRequest], float] | None = None,
                 complete: Callable[[GenerateRequest, int], str] | None = None) -> None:
        self.score = score or (lambda r: -float(len(r.continuation)))
        self.complete = complete or (lambda r, i: "")
        self.loglik_calls: list[int] = []
        self.generate_calls: list[int] = []

    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[LoglikResult]:
        self.loglik_calls.append(len(requests))
        return [LoglikResult(self.score(r), False, 1) for r in requests]

    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[str]]:
        self.generate_calls.append(len(requests))
        return [[self.complete(r, i) for i in range(r.n)] for r in requests]


class CharTokenizer:
    """One token per character (ids 3..514); BOS 2, EOS 1, PAD 0. Enough for tiny models."""

    pad_id, eos_id, bos_id = 0, 1, 2

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return ([self.bos_id] if add_bos else []) + [3 + ord(c) % 500 for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i - 3) for i in ids if i >= 3)


@pytest.fixture
def scripted_lm() -> type[ScriptedLM]:
    return ScriptedLM


@pytest.fixture
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()
