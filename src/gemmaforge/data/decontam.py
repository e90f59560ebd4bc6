"""Decontamination against the evaluation harness's n-gram export (`gemmaforge eval --export-ngrams`).

The export is JSON Lines, one eval item a line: `{"item": "gsm8k/12", "n": 13, "ngrams": ["w1 ... w13", ...]}`,
over the shared `text.words` normalisation. Items shorter than n words appear whole (fewer words). We hash
every n-gram the same way as our documents' n-grams, per length, and look matches up in a sorted array,
so the index is compact and picklable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..util.jsonl import read_jsonl
from .errors import DataError
from .text import ngram_hashes, word_hashes, words


@dataclass
class EvalNgrams:
    """Sorted n-gram hashes of evaluation items, each with the index of its item."""

    n: int
    items: list[str]
    hashes: np.ndarray  # uint64, sorted
    owners: np.ndarray  # int32: item index of each hash
    lengths: tuple[int, ...]  # the n-gram lengths present (n, and shorter whole items)

    @classmethod
    def load(cls, path: str | Path) -> EvalNgrams:
        try:
            records = [rec for _, rec in read_jsonl(path, DataError)]
        except DataError as e:
            raise DataError(f"eval n-gram export {e}") from None
        return cls.from_records(records, str(path))

    @classmethod
    def from_records(cls, records: list, where: str = "eval n-gram export") -> EvalNgrams:
        ns = {r.get("n") if isinstance(r, dict) else None for r in records}
        if not records or len(ns) != 1 or not isinstance(n := ns.pop(), int) or n <= 0:
            raise DataError(f'{where}: expected lines of {{"item": "task/id", "n": int, "ngrams": [...]}} '
                            "with one positive n")
        items, hashes, owners, lengths = [], [], [], set()
        for k, rec in enumerate(records):
            grams = rec.get("ngrams")
            if not isinstance(rec.get("item"), str) or not isinstance(grams, list):
                raise DataError(f"{where}: record {k + 1} needs a string 'item' and a list 'ngrams'")
            items.append(rec["item"])
            for g in grams:
                ws = words(g) if isinstance(g, str) else []
                if not 0 < len(ws) <= n:
                    raise DataError(f"{where}: item {rec['item']!r} has {g!r}, not 1 to {n} normalised words")
                hashes.append(ngram_hashes(word_hashes(ws), len(ws))[0])
                owners.append(k)
                lengths.add(len(ws))
        h = np.asarray(hashes, dtype=np.uint64)
        order = np.argsort(h, kind="stable")
        return cls(n, items, h[order], np.asarray(owners, dtype=np.int32)[order], tuple(sorted(lengths)))

    def matches(self, text: str) -> tuple[int, list[str]]:
        """(distinct matching n-grams, eval items they belong to, sorted)."""
        if not len(self.hashes):
            return 0, []
        wh = word_hashes(words(text))
        doc = np.unique(np.concatenate([ngram_hashes(wh, k) for k in self.lengths]))
        lo = np.searchsorted(self.hashes, doc, side="left")
        hi = np.searchsorted(self.hashes, doc, side="right")
        hit = hi > lo
        if not hit.any():
            return 0, []
        owners = np.concatenate([self.owners[a:b] for a, b in zip(lo[hit], hi[hit])])
        return int(hit.sum()), sorted(self.items[k] for k in np.unique(owners))
