"""Rule-based quality filters: Gopher quality, Gopher repetition (Rae et al. 2021, table A1) and C4.

Thresholds are the papers' defaults. Words here are whitespace-separated tokens with surrounding
punctuation stripped, which needs no NLTK and is what the rules were tuned for in spirit.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .base import Drop, Verdict

_PUNCT = string.punctuation + "“”‘’–—…"
_PARAGRAPHS = re.compile(r"\n{2,}")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


def _words(text: str) -> list[str]:
    """Whitespace tokens without surrounding punctuation; pure-punctuation tokens are dropped."""
    return [w for w in (t.strip(_PUNCT) for t in text.split()) if w]


@dataclass(frozen=True)
class GopherQuality:
    """Drops documents that do not look like natural-language prose."""

    name: ClassVar[str] = "gopher_quality"
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        return [self._check(t) for t in texts]

    def _check(self, text: str) -> Verdict:
        ws = _words(text)
        n = len(ws)
        if n < self.min_words:
            return Drop("too_few_words")
        if n > self.max_words:
            return Drop("too_many_words")
        mean = sum(map(len, ws)) / n
        if mean < self.min_mean_word_length:
            return Drop("short_mean_word_length")
        if mean > self.max_mean_word_length:
            return Drop("long_mean_word_length")
        if text.count("#") / n > self.max_symbol_word_ratio:
            return Drop("hash_symbol_ratio")
        if (text.count("...") + text.count("…")) / n > self.max_symbol_word_ratio:
            return Drop("ellipsis_symbol_ratio")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if sum(ln.startswith(("•", "-", "*", "·")) for ln in lines) / len(lines) > self.max_bullet_lines_ratio:
            return Drop("bullet_lines")
        if sum(ln.endswith(("...", "…")) for ln in lines) / len(lines) > self.max_ellipsis_lines_ratio:
            return Drop("ellipsis_lines")
        if sum(any(c.isalpha() for c in w) for w in ws) / n < self.min_alpha_words_ratio:
            return Drop("non_alpha_words")
        stops = set(self.stop_words)
        if sum(w.lower() in stops for w in ws) < self.min_stop_words:
            return Drop("too_few_stop_words")
        return text


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in the repeats) — first occurrences do not count."""
    seen: set[str] = set()
    count = chars = 0
    for it in items:
        if it in seen:
            count += 1
            chars += len(it)
        else:
            seen.add(it)
    return count, chars


def _ngrams(ws: list[str], n: int) -> list[str]:
    return [" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)]


def _duplicate_ngram_chars(ws: list[str], n: int) -> int:
    """Characters covered by n-grams seen before, skipping past each repeat (no double counting)."""
    seen: set[str] = set()
    chars, i = 0, 0
    while i <= len(ws) - n:
        g = " ".join(ws[i:i + n])
        if g in seen:
            chars += len(g)
            i += n
        else:
            seen.add(g)
            i += 1
    return chars


@dataclass(frozen=True)
class GopherRepetition:
    """Drops documents dominated by repeated lines, paragraphs or n-grams (boilerplate, spam)."""

    name: ClassVar[str] = "gopher_repetition"
    max_duplicate_line_fraction: float = 0.30
    max_duplicate_paragraph_fraction: float = 0.30
    max_duplicate_line_char_fraction: float = 0.20
    max_duplicate_paragraph_char_fraction: float = 0.20
    # {n: max fraction of characters in the most frequent n-gram}
    top_ngram_char_fraction: dict[str, float] = field(default_factory=lambda: {"2": 0.20, "3": 0.18, "4": 0.16})
    # {n: max fraction of characters in repeated n-grams}
    duplicate_ngram_char_fraction: dict[str, float] = field(
        default_factory=lambda: {"5": 0.15, "6": 0.14, "7": 0.13, "8": 0.12, "9": 0.11, "10": 0.10})

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        return [self._check(t) for t in texts]

    def _check(self, text: str) -> Verdict:
        size = len(text)
        if size == 0:
            return Drop("empty")
        paragraphs = _PARAGRAPHS.split(text.strip())
        count, chars = _duplicates(paragraphs)
        if count / len(paragraphs) > self.max_duplicate_paragraph_fraction:
            return Drop("duplicate_paragraphs")
        if chars / size > self.max_duplicate_paragraph_char_fraction:
            return Drop("duplicate_paragraph_chars")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        count, chars = _duplicates(lines)
        if lines and count / len(lines) > self.max_duplicate_line_fraction:
            return Drop("duplicate_lines")
        if chars / size > self.max_duplicate_line_char_fraction:
            return Drop("duplicate_line_chars")
        ws = text.split()
        for n, limit in sorted(self.top_ngram_char_fraction.items(), key=lambda kv: int(kv[0])):
            grams = _ngrams(ws, int(n))
            if grams:
                gram, freq = Counter(grams).most_common(1)[0]
                if freq > 1 and len(gram) * freq / size > limit:
                    return Drop(f"top_{n}gram")
        for n, limit in sorted(self.duplicate_ngram_char_fraction.items(), key=lambda kv: int(kv[0])):
            if _duplicate_ngram_chars(ws, int(n)) / size > limit:
                return Drop(f"duplicate_{n}grams")
        return text


@dataclass(frozen=True)
class C4:
    """C4's line rules (keep only sentence-like lines) and document rules (Raffel et al. 2020)."""

    name: ClassVar[str] = "c4"
    min_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    remove_citations: bool = True
    policy_phrases: list[str] = field(default_factory=lambda: [
        "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"])

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        return [self._check(t) for t in texts]

    def _check(self, text: str) -> Verdict:
        low = text.lower()
        if "lorem ipsum" in low:
            return Drop("lorem_ipsum")
        if "{" in text:
            return Drop("curly_bracket")
        kept: list[str] = []
        sentences = 0
        for line in text.splitlines():
            line = line.strip()
            if self.remove_citations:
                line = _CITATION.sub("", line)
            ws = line.split()
            if (len(ws) < self.min_words_per_line
                    or not line.endswith((".", "!", "?", '"', "'", "”", "’")) or line.endswith("...")
                    or any(len(w) > self.max_word_length for w in ws)):
                continue
            ll = line.lower()
            if "javascript" in ll or any(p in ll for p in self.policy_phrases):
                continue
            kept.append(line)
            sentences += max(1, len(_SENTENCE_END.findall(line)))
        if sentences < self.min_sentences:
            return Drop("too_few_sentences")
        return "\n".join(kept)
