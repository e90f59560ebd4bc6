"""Word normalisation and 64-bit n-gram hashing shared by dedup, decontamination and the classifier.

One normalisation everywhere (NFKC, lower case, runs of letters and digits) makes our n-grams
comparable with the evaluation harness's n-gram export, which uses this same `words`. Hashes use
blake2b, not Python's `hash()`, so they are the same in every process and every run.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

_WORD = re.compile(r"[^\W_]+")  # letters and digits; punctuation, "_" and spaces separate words
_CACHE: dict[str, int] = {}
_CACHE_LIMIT = 1 << 20
# Odd 64-bit multiplier for the polynomial n-gram hash (arithmetic wraps modulo 2**64).
_MULT = np.uint64(0x9E3779B97F4A7C15)


def words(text: str) -> list[str]:
    """Normalised word tokens (NFKC, lower case): the normalisation of the decontamination contract."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def stable_hash(data: str) -> int:
    """64-bit hash of a string, identical across processes and runs."""
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "little")


def word_hashes(ws: list[str]) -> np.ndarray:
    """uint64 hash per word; a per-process cache makes Zipf-distributed text cheap to hash."""
    out = np.empty(len(ws), dtype=np.uint64)
    cache = _CACHE
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    for i, w in enumerate(ws):
        h = cache.get(w)
        if h is None:
            h = cache[w] = stable_hash(w)
        out[i] = h
    return out


def ngram_hashes(wh: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every run of `n` consecutive word hashes (order-sensitive), vectorised."""
    m = len(wh) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = wh[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            acc = acc * _MULT + wh[j:j + m]
    return acc


def text_ngram_hashes(text: str, n: int) -> np.ndarray:
    """Hashes of the word n-grams of `text` under the shared normalisation."""
    return ngram_hashes(word_hashes(words(text)), n)
