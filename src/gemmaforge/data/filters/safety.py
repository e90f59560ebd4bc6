"""Safety step: a word/phrase blocklist plus an optional pluggable classifier.

The built-in list is deliberately short (unambiguous adult-content terms); real runs should pass
their own list (`blocklist` file, one term per line) and, where available, a classifier.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import DataError
from .base import Drop, Verdict

#: Scores a batch of texts: one probability of being unsafe per text.
SafetyClassifier = Callable[[Sequence[str]], Sequence[float]]

# "xxx" is left out on purpose: code and docs use it as a placeholder (the stdlib's logging docs do).
DEFAULT_BLOCKLIST = (
    "porn", "porno", "pornography", "pornographic", "hardcore sex", "sex video", "sex videos",
    "nude pics", "nudes", "camgirl", "camgirls", "hentai", "milf", "escort service", "escort services",
    "onlyfans", "bdsm", "blowjob", "gangbang", "child porn",
)


def load_callable(spec: str) -> SafetyClassifier:
    """Import `module:function` (or `module:Class`, instantiated without arguments)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise DataError(f"safety classifier {spec!r}: expected 'module:function'")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise DataError(f"safety classifier {spec!r}: cannot import it ({e})") from None
    return obj() if isinstance(obj, type) else obj


@dataclass
class SafetyFilter:
    """Drops documents with at least `min_hits` blocklisted terms, or scored unsafe by the classifier."""

    name: ClassVar[str] = "safety"
    blocklist: str = ""  # file with one term per line; empty: the built-in list
    terms: list[str] = field(default_factory=list)  # extra terms on top of the list
    min_hits: int = 1
    classifier: str = ""  # "module:function" returning unsafe probabilities; empty: none
    threshold: float = 0.5
    _classify: SafetyClassifier | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.blocklist:
            try:
                base = [ln.strip() for ln in Path(self.blocklist).read_text("utf-8").splitlines()]
            except OSError as e:
                raise DataError(f"safety blocklist {self.blocklist}: {e.strerror}") from None
        else:
            base = list(DEFAULT_BLOCKLIST)
        terms = sorted({t.lower() for t in base + list(self.terms) if t and not t.startswith("#")},
                       key=len, reverse=True)
        self._pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, terms)) + r")(?!\w)") if terms else None
        if self._classify is None and self.classifier:
            self._classify = load_callable(self.classifier)

    def hits(self, text: str) -> int:
        return len(self._pattern.findall(text.lower())) if self._pattern else 0

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        out: list[Verdict] = [Drop("blocklist", f"{n} >= {self.min_hits} hits") if (n := self.hits(t)) >= self.min_hits
                              else t for t in texts]
        if self._classify is not None:
            todo = [i for i, v in enumerate(out) if isinstance(v, str)]
            scores = list(self._classify([texts[i] for i in todo]))
            if len(scores) != len(todo):
                raise DataError(f"safety classifier returned {len(scores)} scores for {len(todo)} texts")
            for i, s in zip(todo, scores):
                if s >= self.threshold:
                    out[i] = Drop("classifier", f"{s:.3f} >= {self.threshold}")
        return out
