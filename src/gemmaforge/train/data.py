"""Token blocks for pre-training and the batches of each optimizer step.

The trainer needs only a map-style dataset: `len(ds)` blocks, `ds[i]` an integer array of
seq_len + 1 tokens (inputs = block[:-1], targets = block[1:]). Two kinds are opened here: a flat
file of little-endian uint32 tokens (`TokenFile`), and a directory prepared by the data pipeline
(`gemmaforge.data.PackedDataset`, which follows the same protocol and storage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .errors import TrainError

TOKEN_DTYPE = np.dtype("<u4")


class BlockDataset(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> np.ndarray | torch.Tensor: ...


class TokenFile:
    """A memory-mapped flat token file read as blocks of seq_len + 1 at stride seq_len."""

    def __init__(self, path: str | Path, seq_len: int) -> None:
        self.path, self.seq_len = Path(path), seq_len
        size = self.path.stat().st_size
        if size % TOKEN_DTYPE.itemsize:
            raise TrainError(f"{self.path}: {size} bytes is not a whole number of uint32 tokens")
        self.tokens = np.memmap(self.path, dtype=TOKEN_DTYPE, mode="r") if size else np.zeros(0, TOKEN_DTYPE)

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.seq_len)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"block {i} out of range for {len(self)} blocks")
        return self.tokens[i * self.seq_len:(i + 1) * self.seq_len + 1].astype(np.int64)

    def max_token(self) -> int:
        return int(self.tokens.max()) if len(self.tokens) else -1


def open_blocks(path: str | Path, seq_len: int, vocab_size: int, field: str) -> BlockDataset:
    """Open `path` (config field `field`) as blocks, failing now, with the field named, if it is
    missing, unreadable, too short for one block, or holds token ids outside the vocabulary."""
    p = Path(path)
    if not str(path):
        raise TrainError(f"{field}: no data path given")
    try:
        if p.is_dir():
            ds = _prepared_dir(p, seq_len, vocab_size, field)
        elif p.is_file():
            ds = TokenFile(p, seq_len)
            top = ds.max_token()
            if top >= vocab_size:
                raise TrainError(f"{field}: {p} holds token id {top}, outside the model's vocabulary "
                                 f"of {vocab_size} (model.vocab_size)")
        else:
            raise TrainError(f"{field}: {p} does not exist")
    except OSError as e:
        raise TrainError(f"{field}: cannot read {p}: {e.strerror or e}") from None
    except TrainError as e:
        raise TrainError(str(e) if str(e).startswith(field) else f"{field}: {e}") from None
    if len(ds) == 0:
        raise TrainError(f"{field}: {p} is too short for one block of {seq_len + 1} tokens (data.seq_len)")
    return InVocab(ds, vocab_size, f"{field}: {p}")


class InVocab:
    """Blocks checked against the vocabulary as they are read. A prepared directory's token range
    comes from its manifest, not a scan, so a shard damaged after it was written would otherwise
    surface as an index error deep inside the embedding, mid-run."""

    def __init__(self, dataset: BlockDataset, vocab_size: int, where: str) -> None:
        self.dataset, self.vocab_size, self.where = dataset, vocab_size, where

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray | torch.Tensor:
        block = self.dataset[i]
        top = int(block.max())
        if top >= self.vocab_size:
            raise TrainError(f"{self.where}: block {i} holds token id {top}, outside the model's vocabulary of "
                             f"{self.vocab_size}: the data is damaged (check its shards against the sha256 in "
                             "manifest.json) or was made with another tokenizer")
        return block


def _prepared_dir(p: Path, seq_len: int, vocab_size: int, field: str) -> BlockDataset:
    """The data pipeline's output directory (manifest.json + token shards). Its token range is
    judged by the tokenizer the manifest names rather than by scanning every shard."""
    from ..data import DataError, PackedDataset

    try:
        ds = PackedDataset(p, seq_len)
    except DataError as e:
        raise TrainError(f"{field}: {e}") from None
    vocab = ds.manifest.get("tokenizer", {}).get("vocab_size")
    if vocab is not None and vocab > vocab_size:
        raise TrainError(f"{field}: {p} was tokenised with a {vocab}-piece vocabulary, larger than the "
                         f"model's {vocab_size} (model.vocab_size)")
    return ds


class StepBatches:
    """The micro-batches each rank computes for optimizer step `s`: a pure function of `s`.

    Step s takes global positions [s*G, (s+1)*G) of an endless stream that visits the blocks in
    a fresh permutation each epoch, fixed by (seed, epoch). Rank r of W takes the r-th contiguous
    slice of G/W positions and splits it into micro-batches. The same step thus sees the same
    blocks whatever the world size, and resuming means starting at a step.
    """

    def __init__(self, dataset: BlockDataset, global_batch: int, micro_batch: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if global_batch % (micro_batch * world_size):
            raise TrainError(f"train.global_batch ({global_batch}) must be a multiple of train.micro_batch "
                             f"({micro_batch}) x ranks ({world_size})")
        self.dataset, self.global_batch, self.micro_batch = dataset, global_batch, micro_batch
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._epoch, self._perm = -1, np.zeros(0, np.int64)

    @property
    def accumulation(self) -> int:
        return self.global_batch // (self.micro_batch * self.world_size)

    def position(self, step: int) -> int:
        """Blocks consumed (over all ranks) before `step`."""
        return step * self.global_batch

    def identity(self) -> dict[str, int]:
        """What must not change for a checkpoint to resume with the same data stream."""
        return {"blocks": len(self.dataset), "global_batch": self.global_batch, "data_seed": self.seed}

    def block_index(self, position: int) -> int:
        n = len(self.dataset)
        epoch = position // n
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(n)
        return int(self._perm[position % n])

    def micro_batches(self, step: int) -> list[torch.Tensor]:
        per_rank = self.global_batch // self.world_size
        start = self.position(step) + self.rank * per_rank
        return [stack([self.dataset[self.block_index(p)] for p in range(s, s + self.micro_batch)])
                for s in range(start, start + per_rank, self.micro_batch)]


def eval_indices(dataset: BlockDataset, blocks: int) -> list[int]:
    """The validation blocks: `blocks` of them spread evenly over the set (all if it is smaller)."""
    n = min(blocks, len(dataset))
    if n == 0:
        raise TrainError("data.val: no validation blocks")
    return np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist()


@dataclass(frozen=True)
class Padding:
    """A validation micro-batch that a rank with a smaller share runs only to keep step with the
    others (FSDP's collectives need every rank to run as many forward passes); it counts for nothing."""

    batch: torch.Tensor


def eval_batches(dataset: BlockDataset, blocks: int, micro_batch: int, rank: int = 0,
                 world_size: int = 1) -> list[torch.Tensor | Padding]:
    """This rank's share of the validation blocks, in micro-batches. Every block is scored exactly
    once whatever the number of ranks (so validation numbers do not depend on it), and every rank
    gets as many micro-batches, those short of blocks padding with `Padding`."""
    every = eval_indices(dataset, blocks)
    mine = every[rank::world_size]
    batches: list[torch.Tensor | Padding] = [stack([dataset[i] for i in mine[s:s + micro_batch]])
                                             for s in range(0, len(mine), micro_batch)]
    per_rank = math.ceil(math.ceil(len(every) / world_size) / micro_batch)
    return batches + [Padding(stack([dataset[every[0]]]))] * (per_rank - len(batches))


def stack(blocks: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(b, dtype=torch.long) for b in blocks])


def unigram_entropy(dataset: BlockDataset, blocks: int) -> float:
    """Entropy (nats/token) of the validation targets: the loss of the best model that ignores
    context, on exactly the tokens a validation pass scores."""
    targets = np.concatenate([np.asarray(dataset[i])[1:] for i in eval_indices(dataset, blocks)])
    counts = np.bincount(targets)
    p = counts[counts > 0] / len(targets)
    return float(-(p * np.log(p)).sum())
