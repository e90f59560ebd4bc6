"""What a document filter is: a batch in, per document either the (possibly edited) text or a Drop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class Drop:
    """A filter's verdict to remove a document.

    `reason` is a stable code (the manifest counts drops by it); `detail` is the measured value against
    the threshold, e.g. `Drop("too_few_sentences", "2 < 3")`, shown with each example so a user can see
    why that document went.
    """

    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


Verdict = str | Drop  # the (possibly edited) text, or why it goes


class Filter(Protocol):
    """Filters work on batches so that model-based ones can batch their forward passes.

    Each is a dataclass whose fields are its options (the config's `[[filters]]` keys) and whose
    `name` is the config's filter name.
    """

    name: ClassVar[str]

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        ...
