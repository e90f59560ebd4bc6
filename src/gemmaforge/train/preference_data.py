"""Preference pairs: JSON Lines in, fixed-size training items out.

Each line holds a prompt and two responses, the preferred one first:
`{"prompt": "…", "chosen": "…", "rejected": "…"}` — the prompt may also be a list of chat messages
(`[{"role": "user", "content": …}, …]`), and chosen/rejected may be single model messages or lists
holding one (TRL's conversational format). Both responses are rendered as the model's turn after
the prompt in the model's chat format; the *completion* is that turn's content and its
`<end_of_turn>` (what a policy generates), the rest is context.

An item is a LongTensor [2, 4, seq_len]: for chosen (0) and rejected (1), rows ids, attention mask,
completion mask and the pair's index (for per-pair values kept beside the data, such as DPO's
reference log-probabilities). Padding is on the right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..util.jsonl import read_jsonl
from .errors import TrainError


@dataclass(frozen=True)
class Pair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    where: str  # "file:line"


def _response(record: dict, key: str) -> str:
    value = record.get(key)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], Mapping):
        value = value[0].get("content")
    if not isinstance(value, str):
        raise InputError(f"'{key}' must be a string (or one model message), got {type(value).__name__}")
    if not value.strip():
        raise InputError(f"'{key}' is empty")
    return value


def to_pair(record: Any, where: str) -> Pair:
    """The pair a JSONL record holds; bad records raise InputError."""
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in record]
    if missing:
        raise InputError(f"missing field(s) {', '.join(missing)}; a preference row has prompt, chosen and rejected")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InputError("'prompt' is empty")
        prompt = [{"role": "user", "content": prompt}]
    elif not (isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) for m in prompt)):
        raise InputError("'prompt' must be a string or a non-empty list of chat messages")
    chosen, rejected = _response(record, "chosen"), _response(record, "rejected")
    if chosen.strip() == rejected.strip():
        raise InputError("'chosen' equals 'rejected': the pair states no preference")
    return Pair([dict(m) for m in prompt], chosen, rejected, where)


def read_pairs(path: str | Path) -> list[Pair]:
    """Every pair of a (possibly gzipped) JSONL file; bad input is one error naming file:line."""
    pairs = []
    for n, record in read_jsonl(path, TrainError):
        try:
            pairs.append(to_pair(record, f"{path}:{n}"))
        except InputError as e:
            raise TrainError(f"{path}:{n}: {e}") from None
    if not pairs:
        raise TrainError(f"{path}: holds no preference pairs")
    return pairs


def render_pair(tok: Any, pair: Pair) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """(ids, completion mask) of prompt + chosen and of prompt + rejected."""
    out = []
    for response in (pair.chosen, pair.rejected):
        try:
            out.append(tok.render_chat(pair.prompt + [{"role": "model", "content": response}]))
        except InputError as e:
            raise TrainError(f"{pair.where}: {e}") from None
    return out[0], out[1]


@dataclass
class PairStats:
    pairs: int = 0
    items: int = 0
    too_long: int = 0  # pairs with a side longer than seq_len: left out


def build_items(tok: Any, pairs: Sequence[Pair], seq_len: int, first_index: int = 0) -> tuple[torch.Tensor, PairStats]:
    """Items [N, 2, 4, seq_len] for the pairs that fit, in file order."""
    stats = PairStats(pairs=len(pairs))
    items = []
    for index, pair in enumerate(pairs):
        sides = render_pair(tok, pair)
        if max(len(ids) for ids, _ in sides) > seq_len:
            stats.too_long += 1
            continue
        item = torch.zeros(2, 4, seq_len, dtype=torch.long)
        for s, (ids, mask) in enumerate(sides):
            item[s, 0, :len(ids)] = torch.tensor(ids)
            item[s, 1, :len(ids)] = 1
            item[s, 2, :len(ids)] = torch.tensor(mask)
        item[:, 3] = first_index + index  # unique across files, so per-pair tables can cover both
        items.append(item)
    if not items:
        raise TrainError(f"no preference pair fits data.seq_len = {seq_len} (raise it)")
    stats.items = len(items)
    return torch.stack(items), stats


def split_sides(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch [B, 2, 4, T] as [2B, T] ids, attention, completion mask (all chosen rows first, as
    TRL concatenates them) and the B pair indices."""
    width = max(int(batch[:, :, 1].sum(-1).max()), 1)  # padding is on the right: columns past the longest row hold none
    both = torch.cat([batch[:, 0], batch[:, 1]])[..., :width]
    return both[:, 0], both[:, 1], both[:, 2], batch[:, 0, 3, 0]
