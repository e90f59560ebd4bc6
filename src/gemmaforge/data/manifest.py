"""What a run kept and dropped, written next to the shards as `manifest.json`."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sources import Document

SNIPPET = 240


@dataclass
class SourceStats:
    kind: str
    documents_read: int = 0
    documents_kept: int = 0  # after filters, decontamination and dedup
    tokens_kept: int = 0
    documents_written: int = 0  # after the mixture (repeats count each time)
    tokens_written: int = 0


@dataclass
class DropLog:
    """Drops per stage and reason, with the first few examples of each, and per-kind reason counts."""

    examples: int
    counts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)  # kind -> "stage/reason" -> count

    def add(self, stage: str, reason: str, doc: Document, detail: str = "", **extra: Any) -> None:
        """Count a drop under its stable `reason` code; an example also says `stage/reason (detail)`."""
        entry = self.counts.setdefault(stage, {}).setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < self.examples:
            why = f"{stage}/{reason}" + (f" ({detail})" if detail else "")
            entry["examples"].append({"id": doc.id, "reason": why, "text": doc.text[:SNIPPET], **extra})
        self.by_kind.setdefault(doc.kind, Counter())[f"{stage}/{reason}"] += 1

    def summary(self) -> str:
        return ", ".join(f"{stage}/{reason}: {e['count']}" for stage, rs in self.counts.items()
                         for reason, e in rs.items()) or "nothing was dropped"

    def kind_summary(self, kind: str, top: int = 3) -> str:
        """The commonest reasons documents of `kind` were dropped, for error messages."""
        commonest = self.by_kind.get(kind, Counter()).most_common(top)
        return ", ".join(f"{r}: {n}" for r, n in commonest) or "nothing was dropped"


@dataclass
class Manifest:
    """Everything needed to read the shards back and to audit how they were made."""

    seq_len: int
    total_tokens: int
    num_blocks: int
    dtype: str
    shards: list[dict[str, Any]]
    tokenizer: dict[str, Any]
    sources: dict[str, SourceStats]
    mixture: dict[str, dict[str, Any]]
    drops: dict[str, dict[str, dict[str, Any]]]
    contaminated: list[dict[str, Any]]  # every decontaminated document and the eval items it matched
    timings_s: dict[str, float]
    config: dict[str, Any]
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, directory: Path) -> None:
        (directory / "manifest.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n", "utf-8")
