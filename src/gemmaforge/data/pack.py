"""Token shards on disk and the reader the trainer uses.

Layout of an output directory: `manifest.json` plus `tokens-00000.bin`, ... — raw little-endian
uint32 tokens, one continuous stream split into files of `shard_tokens` tokens. Each document is
`BOS text EOS`. Training blocks are windows of seq_len+1 tokens at stride seq_len over the stream
(inputs = block[:-1], targets = block[1:]), so no token is wasted and blocks may cross shards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import DataError

DTYPE = np.dtype("<u4")
MANIFEST = "manifest.json"


def shard_name(i: int) -> str:
    return f"tokens-{i:05d}.bin"


class ShardWriter:
    """Appends token arrays to the stream, starting a new shard file every `shard_tokens` tokens."""

    def __init__(self, directory: Path, shard_tokens: int) -> None:
        self.directory, self.shard_tokens = directory, shard_tokens
        self.shards: list[dict] = []
        self._file = None
        self._hash = None
        self._filled = 0

    def write(self, tokens: np.ndarray) -> None:
        tokens = np.ascontiguousarray(tokens, dtype=DTYPE)
        while len(tokens):
            if self._file is None or self._filled == self.shard_tokens:
                self._open()
            take = min(len(tokens), self.shard_tokens - self._filled)
            chunk = tokens[:take].tobytes()
            self._file.write(chunk)
            self._hash.update(chunk)
            self._filled += take
            self.shards[-1]["tokens"] = self._filled
            tokens = tokens[take:]

    def _open(self) -> None:
        self.close()
        name = shard_name(len(self.shards))
        self._file = open(self.directory / name, "wb")  # noqa: SIM115 (closed by close())
        self._hash = hashlib.sha256()
        self._filled = 0
        self.shards.append({"file": name, "tokens": 0, "sha256": ""})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.shards[-1]["sha256"] = self._hash.hexdigest()
            self._file = None


class PackedDataset:
    """Fixed-length token blocks over a prepared directory, memory-mapped (opens in milliseconds).

    `len(ds)` blocks; `ds[i]` is block i as int64[seq_len + 1] in storage order. `ds.order(seed,
    epoch)` is a deterministic permutation, and `ds.iterate(seed, start)` walks epochs of such
    permutations from any global position, which is how a trainer resumes.
    """

    def __init__(self, path: str | Path, seq_len: int | None = None) -> None:
        """`seq_len` defaults to the one the data was prepared for; any other re-windows the stream."""
        self.path = Path(path)
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path}: not a prepared data directory (cannot read {MANIFEST}: {e})") from None
        self.seq_len = int(seq_len or self.manifest["seq_len"])
        self.total_tokens = int(self.manifest["total_tokens"])
        self._maps = []
        for s in self.manifest["shards"]:
            f = self.path / s["file"]
            if not f.exists() or f.stat().st_size != s["tokens"] * DTYPE.itemsize:
                raise DataError(f"{f}: missing or not {s['tokens']} tokens long as the manifest says")
            self._maps.append(np.memmap(f, dtype=DTYPE, mode="r"))
        self._starts = np.cumsum([0] + [s["tokens"] for s in self.manifest["shards"]])
        if len(self) == 0:
            raise DataError(f"{self.path}: {self.total_tokens} tokens make no block of {self.seq_len + 1}")

    def __len__(self) -> int:
        return max(0, (self.total_tokens - 1) // self.seq_len)

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Stream tokens [start, stop) as int64, across shard boundaries."""
        parts = []
        s = int(np.searchsorted(self._starts, start, side="right")) - 1
        while start < stop:
            lo = start - self._starts[s]
            take = min(stop, self._starts[s + 1]) - start
            parts.append(self._maps[s][lo:lo + take])
            start += take
            s += 1
        return np.concatenate(parts).astype(np.int64)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"block {i} out of range for {len(self)} blocks")
        i %= len(self)
        return self.tokens(i * self.seq_len, (i + 1) * self.seq_len + 1)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The block order of one epoch: a permutation fixed by (seed, epoch)."""
        return np.random.default_rng([seed, epoch]).permutation(len(self))

    def iterate(self, seed: int = 0, start: int = 0, rank: int = 0,
                world_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Endless (position, block) pairs from global position `start`; resume with the next position.

        Position p is block `order(seed, p // len)[p % len]`. With `world_size` > 1, rank r sees only
        positions p with p % world_size == r, so data-parallel ranks never share a block.
        """
        n = len(self)
        pos = start + (rank - start) % world_size
        epoch, perm = -1, None
        while True:
            if pos // n != epoch:
                epoch = pos // n
                perm = self.order(seed, epoch)
            yield pos, self[int(perm[pos % n])]
            pos += world_size

    def batches(self, batch_size: int, seed: int = 0, start: int = 0, rank: int = 0,
                world_size: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Endless (resume position, int64[batch_size, seq_len + 1]) batches; save the position to resume."""
        it = self.iterate(seed, start, rank, world_size)
        while True:
            rows = [next(it) for _ in range(batch_size)]
            yield rows[-1][0] + world_size, np.stack([b for _, b in rows])
