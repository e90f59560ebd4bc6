"""A preallocated key/value cache for incremental decoding.

Global layers keep every position (slot = position); sliding-window layers keep only their window
in a ring buffer (slot = position mod slots), unless the cache must be able to roll back any amount
(a `PromptCache`): then they keep every position too and the mask applies the window. A ring with
`spare` slots beyond its window can roll back up to `spare` positions (speculative decoding): the
positions those writes overwrote lie outside the window of every query still to come. Each slot
remembers the position it holds (-1 when empty), so attention masks come from positions alone and
batches of different lengths need no special cases. One extra "trash" slot per layer absorbs padding tokens.
A `static` cache always shows attention all of its slots (the empty ones masked by position -1):
its shapes never change from one step to the next, as a compiled decode step needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .config import GemmaConfig


@dataclass
class KVCache:
    keys: list[torch.Tensor]  # per layer [B, n_kv, slots + 1, head_dim]
    values: list[torch.Tensor]
    slot_pos: list[torch.Tensor]  # per layer [B, slots + 1], -1 = empty
    ring: list[bool]  # per layer: sliding-window ring buffer?
    next_position: torch.Tensor  # [B] position of each row's next token
    max_len: int
    length: int = 0  # 1 + the largest position stored so far (over rows)
    prev_length: int = 0  # `length` before the current forward
    spare: int = 0  # ring slots beyond the window: how far a ring cache can roll back
    static: bool = False  # attention sees every slot, so shapes are the same at every step

    @classmethod
    def allocate(cls, cfg: GemmaConfig, batch: int, max_len: int, dtype: torch.dtype,
                 device: torch.device | str = "cpu", rings: bool = True, spare: int = 0,
                 static: bool = False) -> KVCache:
        keys, values, slot_pos, ring = [], [], [], []
        for i in range(cfg.n_layers):
            local = rings and cfg.is_local(i) and cfg.sliding_window + spare < max_len
            slots = cfg.sliding_window + spare if local else max_len
            shape = (batch, cfg.n_kv_heads, slots + 1, cfg.head_dim)
            keys.append(torch.zeros(shape, dtype=dtype, device=device))
            values.append(torch.zeros(shape, dtype=dtype, device=device))
            slot_pos.append(torch.full((batch, slots + 1), -1, dtype=torch.long, device=device))
            ring.append(local)
        return cls(keys, values, slot_pos, ring,
                   torch.zeros(batch, dtype=torch.long, device=device), max_len, spare=spare, static=static)

    def repeat(self, n: int) -> KVCache:
        """A copy with each row repeated `n` times in place (rows a, b -> a, a, b, b for n = 2): one
        prefill shared by n continuations, as nanochat's engine copies a prompt into n samples."""
        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.repeat_interleave(n, dim=0)

        return KVCache([rep(k) for k in self.keys], [rep(v) for v in self.values],
                       [rep(p) for p in self.slot_pos], list(self.ring), rep(self.next_position),
                       self.max_len, self.length, self.prev_length, self.spare, self.static)

    def truncate(self, n: int) -> None:
        """Forget every position from `n` on. Ring buffers can forget at most their `spare` last
        positions: older ones may have overwritten keys the window still needs."""
        if any(self.ring) and not 0 <= self.length - n <= self.spare:
            raise ValueError(f"a ring-buffer KV cache with {self.spare} spare slots cannot roll back from "
                             f"{self.length} to {n} positions: allocate it with rings=False or more spare slots")
        for pc in self.slot_pos:
            pc.masked_fill_(pc >= n, -1)
        self.length = self.prev_length = min(self.length, n)
        self.next_position = torch.full_like(self.next_position, n)

    def grown(self, max_len: int) -> KVCache:
        """A copy with room for `max_len` positions (no ring buffers; the trash slot stays last)."""
        if any(self.ring):
            raise ValueError("a ring-buffer KV cache cannot grow: allocate it with rings=False")

        def bigger(t: torch.Tensor, dim: int, fill: float) -> torch.Tensor:  # slots along `dim`
            shape = list(t.shape)
            shape[dim] = max_len + 1
            out = t.new_full(shape, fill)
            out.narrow(dim, 0, self.max_len).copy_(t.narrow(dim, 0, self.max_len))
            return out

        return KVCache([bigger(k, 2, 0) for k in self.keys], [bigger(v, 2, 0) for v in self.values],
                       [bigger(p, 1, -1) for p in self.slot_pos], list(self.ring),
                       self.next_position.clone(), max_len, self.length, self.prev_length)

    def begin(self, k_pos: torch.Tensor) -> None:
        """Called once per forward with the new keys' positions [B, T] (-1 = padding)."""
        top = int(k_pos.max()) + 1
        if top > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; position {top - 1} does not fit")
        self.prev_length, self.length = self.length, max(self.length, top)
        self.next_position = torch.maximum(self.next_position, k_pos.max(dim=1).values + 1)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               k_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Store new keys/values [B, n_kv, T, D]; return what attention should see, with positions."""
        kc, vc, pc = self.keys[layer], self.values[layer], self.slot_pos[layer]
        slots = pc.shape[1] - 1
        chunk_in_ring = self.ring[layer] and k.shape[2] > 1
        if chunk_in_ring:  # the chunk may overwrite keys its own earlier queries still need
            n_old = min(self.prev_length, slots)
            seen = (torch.cat((kc[:, :, :n_old], k), 2), torch.cat((vc[:, :, :n_old], v), 2),
                    torch.cat((pc[:, :n_old], k_pos), 1))
        # Padding, and tokens a ring overwrites within this same chunk, go to the trash slot.
        keep = k_pos >= 0
        if self.ring[layer]:
            keep &= k_pos > k_pos.max(dim=1, keepdim=True).values - slots
            slot = torch.where(keep, k_pos % slots, slots)
        else:
            slot = torch.where(keep, k_pos, slots)
        idx = slot[:, None, :, None].expand_as(k)
        kc.scatter_(2, idx, k)
        vc.scatter_(2, idx, v)
        pc.scatter_(1, slot, torch.where(keep, k_pos, -1))
        pc[:, slots] = -1
        if chunk_in_ring:
            return seen
        n = slots + 1 if self.static else min(self.length, slots)
        return kc[:, :, :n], vc[:, :, :n], pc[:, :n]


class PromptCache:
    """A batch-1 KV cache kept from one generation to the next, as a chat does.

    Each prompt reuses the longest prefix it shares with the tokens already stored, so a new turn
    prefills only itself instead of the whole history. What follows the shared prefix (say, a reply
    whose re-tokenised text differs from the sampled ids) is rolled back. Sliding-window layers
    keep every position here, because a ring buffer cannot roll back.
    """

    def __init__(self) -> None:
        self.cache: KVCache | None = None
        self.tokens: list[int] = []  # what positions 0, 1, ... of `cache` hold

    def reset(self) -> None:
        self.cache, self.tokens = None, []

    def take(self, cfg: GemmaConfig, dtype: torch.dtype, device: torch.device, prompt: list[int],
             need: int) -> tuple[KVCache, int]:
        """The cache, ready for `prompt` and `need` positions in all; and how many of the prompt's
        tokens it already holds (always fewer than all, so the last one yields fresh logits)."""
        keep = common_prefix(self.tokens, prompt[:-1])
        if self.cache is None:
            self.cache = KVCache.allocate(cfg, 1, need, dtype, device, rings=False)
        elif self.cache.max_len < need:  # double, so a long chat reallocates only a few times
            self.cache = self.cache.grown(min(max(need, 2 * self.cache.max_len), cfg.max_seq_len))
        self.cache.truncate(keep)
        self.tokens = prompt[:keep]
        return self.cache, keep


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)
