"""Rule-based quality filters: Gopher quality, Gopher repetition (Rae et al. 2021, appendix A) and C4.

Thresholds are the papers' defaults. Each rule drops with a stable code and the measured value against
its threshold (`Drop("too_few_sentences", "2 < 3")`). What each rule calls a word differs on purpose,
and docs/data.md gives the reasons: Gopher quality counts whitespace words with surrounding punctuation
stripped; Gopher repetition measures n-grams of whitespace tokens as they stand in the text; C4 counts
whitespace tokens per line, as the TFDS code that built C4 did, and sentences with Punkt.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .base import Drop, Verdict
from .sentences import sentences

_PUNCT = string.punctuation + "“”‘’–—…"
_PARAGRAPHS = re.compile(r"(?:\r?\n){2,}")  # blank lines, Windows line endings too
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# Characters that start a bulleted line: Unicode's bullets plus the ASCII ones Markdown and plain text use.
BULLETS = ("•", "‣", "◦", "▪", "●", "·", "-", "*")
# C4's terminal punctuation: TFDS's . ? ! " plus the typographic closing quotes (the paper's "end quotation
# mark") and the ASCII ' that datatrove adds.
END_MARKS = (".", "?", "!", '"', "'", "”", "’")


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def _over(code: str, value: float, limit: float) -> Drop | None:
    """Drop(code, "value > limit") when the value is above the limit."""
    return Drop(code, f"{_num(value)} > {_num(limit)}") if value > limit else None


def _under(code: str, value: float, limit: float) -> Drop | None:
    return Drop(code, f"{_num(value)} < {_num(limit)}") if value < limit else None


def _first(*checks: Drop | None) -> Drop | None:
    return next((c for c in checks if c is not None), None)


def _line_of(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"line {line}"


def words(text: str) -> list[str]:
    """Gopher quality's words: whitespace tokens without surrounding punctuation; pure punctuation is no word."""
    return [w for w in (t.strip(_PUNCT) for t in text.split()) if w]


@dataclass(frozen=True)
class GopherQuality:
    """Drops documents that do not look like natural-language prose (Rae et al. 2021, appendix A.1.1)."""

    name: ClassVar[str] = "gopher_quality"
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2  # distinct stop words ("at least two of"), any case
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        return [self._check(t) for t in texts]

    def _check(self, text: str) -> Verdict:
        ws = words(text)
        n = len(ws)
        drop = _first(_under("too_few_words", n, self.min_words), _over("too_many_words", n, self.max_words))
        if drop:
            return drop
        mean = sum(map(len, ws)) / n
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        drop = _first(
            _under("short_mean_word_length", mean, self.min_mean_word_length),
            _over("long_mean_word_length", mean, self.max_mean_word_length),
            _over("hash_symbol_ratio", text.count("#") / n, self.max_symbol_word_ratio),
            _over("ellipsis_symbol_ratio", (text.count("...") + text.count("…")) / n, self.max_symbol_word_ratio),
            _over("bullet_lines", sum(ln.startswith(BULLETS) for ln in lines) / len(lines),
                  self.max_bullet_lines_ratio),
            _over("ellipsis_lines", sum(ln.endswith(("...", "…")) for ln in lines) / len(lines),
                  self.max_ellipsis_lines_ratio),
            _under("non_alpha_words", sum(any(c.isalpha() for c in w) for w in ws) / n, self.min_alpha_words_ratio))
        if drop:
            return drop
        found = {w.lower() for w in ws} & {s.lower() for s in self.stop_words}
        if len(found) < self.min_stop_words:
            return Drop("too_few_stop_words", f"{len(found)} < {self.min_stop_words} distinct"
                        + (f": {', '.join(sorted(found))}" if found else ""))
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


def _top_ngram_chars(ws: list[str], n: int) -> int:
    """Characters in all occurrences of the most frequent n-gram; 0 when no n-gram repeats.

    Gopher measures "the most frequently-occurring n-gram" to catch repetition: an n-gram that occurs
    once repeats nothing (in a short document it would otherwise be a large fraction on its own).
    """
    grams = Counter(_ngrams(ws, n)).most_common(1)
    return len(grams[0][0]) * grams[0][1] if grams and grams[0][1] > 1 else 0


def _duplicate_ngram_chars(ws: list[str], n: int) -> int:
    """Characters covered by n-grams seen before, skipping past each repeat (no double counting).

    An n-gram's characters include the single spaces that join its words: it is a span of the text,
    and the fraction's denominator (the text's length) counts spaces too.
    """
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
    """Drops documents dominated by repeated lines, paragraphs or n-grams (Rae et al. 2021, table A1)."""

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
        lines = [ln for ln in text.splitlines() if ln.strip()]
        p_count, p_chars = _duplicates(paragraphs)
        l_count, l_chars = _duplicates(lines)
        drop = _first(
            _over("duplicate_paragraphs", p_count / len(paragraphs), self.max_duplicate_paragraph_fraction),
            _over("duplicate_paragraph_chars", p_chars / size, self.max_duplicate_paragraph_char_fraction),
            _over("duplicate_lines", l_count / max(len(lines), 1), self.max_duplicate_line_fraction),
            _over("duplicate_line_chars", l_chars / size, self.max_duplicate_line_char_fraction))
        if drop:
            return drop
        ws = text.split()
        for n, limit in sorted(self.top_ngram_char_fraction.items(), key=lambda kv: int(kv[0])):
            if drop := _over(f"top_{n}gram", _top_ngram_chars(ws, int(n)) / size, limit):
                return drop
        for n, limit in sorted(self.duplicate_ngram_char_fraction.items(), key=lambda kv: int(kv[0])):
            if drop := _over(f"duplicate_{n}grams", _duplicate_ngram_chars(ws, int(n)) / size, limit):
                return drop
        return text


@dataclass(frozen=True)
class C4:
    """C4's line rules (keep only sentence-like lines) and page rules (Raffel et al. 2020, section 2.2).

    The line rules run in the order of the TFDS code that built C4 (`c4_utils.clean_page`); "lorem ipsum"
    and "{" drop the page wherever they appear, as the paper says, not only in lines that survive.
    """

    name: ClassVar[str] = "c4"
    min_sentences: int = 3
    min_words_per_line: int = 5
    max_word_length: int = 1000
    remove_citations: bool = True
    policy_phrases: list[str] = field(default_factory=lambda: [
        "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"])

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        return [self._check(t) for t in texts]

    def _check(self, text: str) -> Verdict:
        if (pos := text.lower().find("lorem ipsum")) >= 0:
            return Drop("lorem_ipsum", _line_of(text, pos))
        if (pos := text.find("{")) >= 0:
            return Drop("curly_bracket", _line_of(text, pos))
        kept: list[str] = []
        count = 0
        for line in text.splitlines():
            line = line.strip()
            if any(len(w) > self.max_word_length for w in line.split()):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if not line.endswith(END_MARKS) or line.endswith("...") or len(line.split()) < self.min_words_per_line:
                continue
            low = line.lower()
            if "javascript" in low or any(p in low for p in self.policy_phrases):
                continue
            kept.append(line)
            count += len(sentences(line))
        if drop := _under("too_few_sentences", count, self.min_sentences):
            return drop
        return "\n".join(kept)
