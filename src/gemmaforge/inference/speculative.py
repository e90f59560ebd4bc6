"""Prompt-lookup speculative decoding: draft tokens copied from earlier in the text.

When the output repeats its input (editing, summarising, answering from a document, code changes),
the tokens after the latest n-gram of the text often follow an earlier occurrence of that n-gram. Those
tokens are drafts; one forward pass over [last token, drafts] checks them all, and every draft the model
would itself have chosen is kept, plus the model's own next token (after Saxena's prompt-lookup
decoding and transformers' PromptLookupCandidateGenerator: longest n-gram first, earliest occurrence).
Each kept token is chosen from exactly the logits plain decoding would give it, by the same sampler
and random stream, so the output is the same; only the number of forward passes changes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class PromptLookup:
    """Draft up to `num_tokens` tokens after the longest matching n-gram of `max_ngram` down to
    `min_ngram` tokens (transformers' defaults: prompt_lookup_num_tokens=10, max n-gram 3)."""

    num_tokens: int = 10
    max_ngram: int = 3
    min_ngram: int = 1

    def __post_init__(self) -> None:
        if self.num_tokens < 1:
            raise InputError(f"prompt lookup: num_tokens must be >= 1, got {self.num_tokens}")
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise InputError(f"prompt lookup: need 1 <= min_ngram <= max_ngram, got min_ngram={self.min_ngram}, "
                             f"max_ngram={self.max_ngram}")


SPECULATIVE = {"prompt-lookup": PromptLookup}  # what `speculative=` names


def resolve_speculative(speculative: str | PromptLookup | None) -> PromptLookup | None:
    """The drafting settings for `speculative=`: a method's name (its defaults), settings, or None."""
    if speculative is None or isinstance(speculative, PromptLookup):
        return speculative
    if isinstance(speculative, str) and speculative in SPECULATIVE:
        return SPECULATIVE[speculative]()
    raise InputError(f"speculative must be one of {', '.join(map(repr, SPECULATIVE))}, a PromptLookup or None, "
                     f"got {speculative!r}")


@dataclass
class SpeculationStats:
    """What speculation did: drafts proposed and accepted, forward passes, tokens emitted."""

    drafted: int = 0
    accepted: int = 0
    forwards: int = 0  # decode forward passes (the prefill not counted)
    tokens: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def add(self, other: SpeculationStats) -> None:
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.forwards += other.forwards
        self.tokens += other.tokens

    def summary(self) -> str:
        return (f"prompt lookup: {self.accepted} of {self.drafted} drafted tokens accepted "
                f"({100 * self.acceptance:.0f}%), {self.tokens} tokens in {self.forwards} decode passes")


class NgramIndex:
    """The text so far, with the first place every n-gram (min_ngram..max_ngram tokens) starts, so a
    lookup costs O(max_ngram) instead of a scan of the whole text."""

    def __init__(self, settings: PromptLookup, tokens: Sequence[int] = ()):
        self.settings = settings
        self.tokens: list[int] = []
        self.first: dict[tuple[int, ...], int] = {}
        for t in tokens:
            self.append(t)

    def append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens)
        for n in range(self.settings.min_ngram, min(self.settings.max_ngram, end) + 1):
            self.first.setdefault(tuple(self.tokens[end - n:]), end - n)

    def draft(self, limit: int, stop_ids: Collection[int] = ()) -> list[int]:
        """Up to `limit` tokens that followed the earliest earlier occurrence of the longest
        matching suffix n-gram; they end at the first stop id (nothing after it would be used)."""
        toks, end = self.tokens, len(self.tokens)
        limit = min(limit, self.settings.num_tokens)
        if limit <= 0:
            return []
        for n in range(min(self.settings.max_ngram, end - 1), self.settings.min_ngram - 1, -1):
            start = self.first.get(tuple(toks[end - n:]))
            if start is not None and start + n < end:  # not the suffix itself
                out = toks[start + n:start + n + limit]
                stop = next((i for i, t in enumerate(out) if t in stop_ids), None)
                return out if stop is None else out[:stop + 1]
        return []
