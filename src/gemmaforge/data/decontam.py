"""Decontamination against the evaluation harness's n-gram export.

The contract (docs/data.md): a JSON file `{"n": 13, "items": {"<task>/<item_id>": ["w1 ... w13", ...]}}`
whose n-grams are over `re.findall(r"\\w+", text.lower())` words. We hash them the same way as our
documents' n-grams and look matches up in a sorted array, so the index is compact and picklable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .text import ngram_hashes, text_ngram_hashes, word_hashes, words


@dataclass
class EvalNgrams:
    """Sorted n-gram hashes of evaluation items, each with the index of its item."""

    n: int
    items: list[str]
    hashes: np.ndarray  # uint64, sorted
    owners: np.ndarray  # int32: item index of each hash

    @classmethod
    def load(cls, path: str | Path) -> EvalNgrams:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except OSError as e:
            raise DataError(f"eval n-gram export {path}: {e.strerror}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"eval n-gram export {path}: not valid JSON ({e})") from None
        return cls.from_export(data, str(path))

    @classmethod
    def from_export(cls, data: object, where: str = "eval n-gram export") -> EvalNgrams:
        if not isinstance(data, dict) or not isinstance(data.get("n"), int) or data["n"] <= 0 \
                or not isinstance(data.get("items"), dict):
            raise DataError(f'{where}: expected {{"n": positive int, "items": {{"task/id": ["w1 ... wn", ...]}}}}')
        n, items = data["n"], list(data["items"])
        hashes, owners = [], []
        for k, item in enumerate(items):
            grams = data["items"][item]
            if not isinstance(grams, list):
                raise DataError(f"{where}: items[{item!r}] must be a list of n-gram strings")
            for g in grams:
                ws = words(g) if isinstance(g, str) else []
                if len(ws) != n:
                    raise DataError(f"{where}: items[{item!r}] has {g!r}, not {n} normalised words")
                hashes.append(ngram_hashes(word_hashes(ws), n)[0])
                owners.append(k)
        h = np.asarray(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        return cls(n, items, h[order], np.asarray(owners, dtype=np.int32)[order])

    def matches(self, text: str) -> tuple[int, list[str]]:
        """(distinct matching n-grams, eval items they belong to, sorted)."""
        if not len(self.hashes):
            return 0, []
        doc = np.unique(text_ngram_hashes(text, self.n))
        lo = np.searchsorted(self.hashes, doc, side="left")
        hi = np.searchsorted(self.hashes, doc, side="right")
        hit = hi > lo
        if not hit.any():
            return 0, []
        owners = np.concatenate([self.owners[a:b] for a, b in zip(lo[hit], hi[hit])])
        return int(hit.sum()), sorted(self.items[k] for k in np.unique(owners))
