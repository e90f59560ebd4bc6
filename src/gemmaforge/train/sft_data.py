"""SFT examples: JSON Lines in, packed training rows out.

Each line is a conversation, `{"messages": [{"role": …, "content": …}, …]}` (the format of
transformers and of OpenAI's fine-tuning API), or a pair, `{"prompt": …, "response": …}`
("completion" is read as "response"). The tokenizer renders it in the model's chat format and
says which tokens belong to model turns (`Tokenizer.render_chat`): the loss is on those only —
each model turn's content and its closing `<end_of_turn>`, never its `<start_of_turn>model\\n`
header or a user turn.

Rows are `seq_len` positions: [ids, labels, positions, segments] stacked into one LongTensor
[4, seq_len]. With packing, several conversations share a row; positions restart at 0 for each
and `segments` keeps attention inside each (the model's `segment_ids`), so a packed row computes
exactly what the conversations would alone. Labels are the next token where it is trained, else
-100; padding is id 0, label -100, its own segment.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .errors import TrainError
from .losses import IGNORE_INDEX

PAD_SEGMENT = -1


@dataclass(frozen=True)
class Example:
    ids: list[int]
    mask: list[int]  # 1 where the token is trained
    where: str  # "file:line", for messages


def to_messages(record: Any) -> list[Mapping]:
    """The conversation a JSONL record holds (messages, or prompt + response)."""
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise InputError("'messages' must be a non-empty list of {\"role\", \"content\"} objects")
        return messages
    response = record.get("response", record.get("completion"))
    if "prompt" in record and response is not None:
        if not isinstance(record["prompt"], str) or not isinstance(response, str):
            raise InputError("'prompt' and 'response' must be strings")
        return [{"role": "user", "content": record["prompt"]}, {"role": "model", "content": response}]
    raise InputError(f"expected 'messages', or 'prompt' and 'response'; got keys {sorted(record)}")


def render(tok: Any, messages: Sequence[Mapping]) -> tuple[list[int], list[int]]:
    """(ids, trained mask) of one conversation; refuses one with nothing to train on."""
    for i, m in enumerate(messages):
        if isinstance(m, Mapping) and m.get("role") in ("model", "assistant") and \
                isinstance(m.get("content"), str) and not m["content"].strip():
            raise InputError(f"message {i}: empty {m['role']} response")
    ids, mask = tok.render_chat(messages)
    if not any(mask):
        raise InputError("no model turn: nothing to train on (the last turn must be the model's, or "
                         "any earlier model turn)")
    return ids, mask


def read_examples(path: str | Path, tok: Any) -> list[Example]:
    """Every conversation of a JSONL file, rendered; bad input is one error naming file:line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        lines = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8").splitlines()
    except (OSError, EOFError) as e:
        raise TrainError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TrainError(f"{path}: not JSON Lines (not UTF-8 text)") from None
    examples = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise TrainError(f"{where}: not JSON Lines ({e.msg} at column {e.colno})") from None
        try:
            ids, mask = render(tok, to_messages(record))
        except InputError as e:
            raise TrainError(f"{where}: {e}") from None
        examples.append(Example(ids, mask, where))
    if not examples:
        raise TrainError(f"{path}: holds no examples")
    return examples


def example_arrays(ex: Example, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) of one example, cut to seq_len positions: labels[t] = ids[t + 1] if that
    token is trained, else -100."""
    ids = np.asarray(ex.ids, dtype=np.int64)
    mask = np.asarray(ex.mask, dtype=bool)
    labels = np.where(mask[1:], ids[1:], IGNORE_INDEX)
    return ids[:-1][:seq_len], labels[:seq_len]


@dataclass
class PackStats:
    examples: int = 0
    rows: int = 0
    truncated: int = 0  # longer than a row: cut at seq_len
    dropped: int = 0  # nothing trained left after the cut
    trained_tokens: int = 0
    filled: float = 0.0  # share of row positions holding real tokens


def pack(examples: Sequence[Example], seq_len: int, packed: bool = True, seed: int = 0
         ) -> tuple[torch.Tensor, PackStats]:
    """Rows [N, 4, seq_len] from the examples, shuffled by `seed` first. With `packed`, each row is
    filled with whole conversations in turn (a new row when the next does not fit); without, one
    conversation per row. Returns the rows and what happened to the examples."""
    stats = PackStats(examples=len(examples))
    rows: list[list[tuple[np.ndarray, np.ndarray]]] = []
    used = seq_len + 1  # forces a first row
    for i in np.random.default_rng(seed).permutation(len(examples)):
        x, y = example_arrays(examples[i], seq_len)
        if len(examples[i].ids) - 1 > seq_len:
            stats.truncated += 1
        if not (y != IGNORE_INDEX).any():
            stats.dropped += 1
            continue
        stats.trained_tokens += int((y != IGNORE_INDEX).sum())
        if not packed or used + len(x) > seq_len:
            rows.append([])
            used = 0
        rows[-1].append((x, y))
        used += len(x)
    if not rows:
        raise TrainError(f"no example keeps a trained token within data.seq_len = {seq_len}")
    out = torch.zeros(len(rows), 4, seq_len, dtype=torch.long)
    out[:, 1] = IGNORE_INDEX
    out[:, 3] = PAD_SEGMENT
    for r, parts in enumerate(rows):
        at = 0
        for s, (x, y) in enumerate(parts):
            n = len(x)
            out[r, 0, at:at + n] = torch.from_numpy(x)
            out[r, 1, at:at + n] = torch.from_numpy(y)
            out[r, 2, at:at + n] = torch.arange(n)
            out[r, 3, at:at + n] = s
            at += n
    stats.rows = len(rows)
    stats.filled = float((out[:, 3] != PAD_SEGMENT).float().mean())
    return out, stats


def trim_padding(rows: torch.Tensor) -> torch.Tensor:
    """Rows [B, 4, T] cut after the last position any row uses. Padding only trails real tokens,
    which never attend to later positions, so the cut computes the same; a batch of short
    conversations then costs their length, not seq_len."""
    used = (rows[:, 3] != PAD_SEGMENT).any(0).nonzero()
    return rows[..., :int(used[-1]) + 1] if len(used) else rows


class Rows:
    """Packed rows as the map-style dataset `StepBatches` reads (one [4, seq_len] row per item)."""

    def __init__(self, rows: torch.Tensor) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rows[i]
