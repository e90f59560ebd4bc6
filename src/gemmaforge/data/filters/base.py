"""What a document filter is: a batch in, per document either the (possibly edited) text or a Drop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class Drop:
    """A filter's verdict to remove a document; `reason` is a short code counted in the manifest."""

    reason: str


Verdict = str | Drop  # the (possibly edited) text, or why it goes


class Filter(Protocol):
    """Filters work on batches so that model-based ones can batch their forward passes.

    Each is a dataclass whose fields are its options (the config's `[[filters]]` keys) and whose
    `name` is the config's filter name.
    """

    name: ClassVar[str]

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        ...
