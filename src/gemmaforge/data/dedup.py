"""Exact and near-duplicate detection (MinHash + LSH banding), deterministic given a seed.

Signatures are computed per document (in parallel); `near_duplicates` is the global step that runs
once over all signatures. The earliest document (in source order) of each cluster is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .text import text_ngram_hashes

_M1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser constants
_M2 = np.uint64(0x94D049BB133111EB)


def exact_key(text: str) -> bytes:
    """Hash of the text with case and whitespace normalised away."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode("utf-8"), digest_size=16).digest()


@dataclass(frozen=True)
class MinHasher:
    """`num_perm` seeded 64-bit mixers (splitmix64 of shingle XOR key) standing in for random permutations.

    A linear (a*x + b) mod p with small a barely reorders its inputs, so its minimum follows the
    smallest shingle and overestimates dissimilarity; a full-avalanche mixer does not.
    """

    num_perm: int
    ngram: int = 5
    seed: int = 0
    _keys: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = np.random.default_rng(self.seed).integers(0, 1 << 63, self.num_perm, dtype=np.uint64)
        object.__setattr__(self, "_keys", keys)

    def signature(self, text: str) -> np.ndarray | None:
        """uint32[num_perm], or None for texts shorter than one shingle (left to exact dedup)."""
        shingles = np.unique(text_ngram_hashes(text, self.ngram))
        if not len(shingles):
            return None
        z = shingles[:, None] ^ self._keys[None, :]
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * _M1
            z = (z ^ (z >> np.uint64(27))) * _M2
        z ^= z >> np.uint64(31)
        return (z.min(axis=0) >> np.uint64(32)).astype(np.uint32)


def near_duplicates(signatures: Sequence[np.ndarray | None], bands: int, rows: int,
                    threshold: float) -> dict[int, int]:
    """{duplicate index: index of the document it duplicates (the earliest of its cluster)}.

    Documents sharing any band are candidates; a candidate pair counts when the fraction of equal
    signature entries (an estimate of Jaccard similarity) reaches `threshold`.
    """
    parent = list(range(len(signatures)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(bands):
        first: dict[bytes, int] = {}
        lo, hi = band * rows, (band + 1) * rows
        for i, sig in enumerate(signatures):
            if sig is None:
                continue
            key = sig[lo:hi].tobytes()
            j = first.setdefault(key, i)
            if j != i and np.mean(signatures[j] == sig) >= threshold:
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # roots are always the smallest index
    return {i: r for i in range(len(signatures)) if (r := root(i)) != i}
