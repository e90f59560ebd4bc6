"""A byte-level tokenizer for generation tests that must not depend on a real vocabulary."""

from __future__ import annotations

from collections.abc import Sequence


class ByteTokenizer:
    pad_id, eos_id, bos_id, end_of_turn_id = 0, 1, 2, 3
    offset = 4

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return ([self.bos_id] if add_bos else []) + [b + self.offset for b in text.encode()]

    def decode(self, ids: Sequence[int]) -> str:
        # ids past the 256 byte values (a tiny model may emit them) decode to nothing
        data = bytes(i - self.offset for i in ids if self.offset <= i < self.offset + 256)
        return data.decode("utf-8", errors="replace")
