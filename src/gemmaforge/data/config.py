"""The data pipeline's configuration: dataclasses loaded from TOML or JSON, validated field by field.

Every validation error names the field as written in the file (`sources[1].kind`), so a typo never
costs a run. Filter tables are validated against the filter's own option dataclass.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, GemmaForgeError
from ..util import configfile
from .default_corpus import PARTS
from .filters import FILTERS

KINDS = ("web", "maths", "code")
FORMATS = ("auto", "text", "jsonl", "parquet")
BACKENDS = ("local", "ray")


@dataclass
class SourceConfig:
    """Where documents come from: files/directories/globs, or one part of the embedded default corpus."""

    name: str
    kind: str  # web | maths | code: what the mixture weights and filter scopes refer to
    paths: list[str] = field(default_factory=list)
    builtin: str = ""  # a default-corpus part (see gemmaforge.data.default_corpus.PARTS) instead of paths
    format: str = "auto"  # by extension: .jsonl[.gz] JSONL, .parquet Parquet, anything else one text document
    text_field: str = "text"  # JSONL/Parquet field holding the text
    max_docs: int | None = None  # read at most this many documents (small runs, tests)


@dataclass
class FilterConfig:
    """One filter: its registry name, its scope, and the filter object built from the other keys."""

    name: str
    filter: Any  # an instance of FILTERS[name]
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    sources: list[str] = field(default_factory=list)  # empty: every source of `kinds`

    def applies_to(self, source: str, kind: str) -> bool:
        return kind in self.kinds and (not self.sources or source in self.sources)


@dataclass
class DedupConfig:
    """Exact (normalised-text hash) and MinHash-LSH near-duplicate removal."""

    exact: bool = True
    minhash: bool = True
    ngram: int = 5  # words per shingle
    bands: int = 20
    rows: int = 5  # bands * rows permutations; candidates share one band
    threshold: float = 0.7  # estimated Jaccard a candidate pair must reach to count as duplicate


@dataclass
class DecontamConfig:
    """Drop documents sharing n-grams with evaluation items (the eval harness's n-gram export)."""

    ngrams: str = ""  # path of the export JSON; empty: no decontamination
    min_matches: int = 1  # distinct matching n-grams that make a document contaminated


@dataclass
class DataConfig:
    """Everything `gemmaforge data prepare` needs."""

    output: str
    tokenizer: str  # any gemmaforge.load_tokenizer source
    sources: list[SourceConfig]
    filters: list[FilterConfig] = field(default_factory=list)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    mixture: dict[str, float] = field(default_factory=dict)  # kind -> token share; empty: as found
    mixture_tokens: int | None = None  # total tokens; None: the most reachable without repeats
    seq_len: int = 1024
    shard_tokens: int = 1 << 24
    seed: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    backend: str = "local"  # local (multiprocessing) | ray (ray.data)
    batch_docs: int = 64  # documents per parallel task
    examples: int = 3  # dropped-document examples kept per filter reason in the manifest
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, where: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"data config: {where}: {msg}")

        need(bool(self.sources), "sources", "at least one source is required")
        names = [s.name for s in self.sources]
        for i, s in enumerate(self.sources):
            w = f"sources[{i}]"
            need(bool(s.name) and names.count(s.name) == 1, f"{w}.name",
                 f"must be a unique non-empty name, got {s.name!r}")
            need(s.kind in KINDS, f"{w}.kind", f"must be one of {', '.join(KINDS)}, got {s.kind!r}")
            need(s.format in FORMATS, f"{w}.format", f"must be one of {', '.join(FORMATS)}, got {s.format!r}")
            need(bool(s.paths) != bool(s.builtin), w, "give either `paths` or `builtin`, not both or neither")
            need(not s.builtin or s.builtin in PARTS, f"{w}.builtin",
                 f"unknown default-corpus part {s.builtin!r}; known: {', '.join(PARTS)}")
            need(s.max_docs is None or s.max_docs > 0, f"{w}.max_docs", "must be positive")
        for i, f in enumerate(self.filters):
            w = f"filters[{i}]"
            bad = [k for k in f.kinds if k not in KINDS]
            need(not bad, f"{w}.kinds", f"unknown kind(s) {bad}; known: {', '.join(KINDS)}")
            bad = [s for s in f.sources if s not in names]
            need(not bad, f"{w}.sources", f"unknown source(s) {bad}; sources: {', '.join(names)}")
        d = self.dedup
        need(d.ngram > 0 and d.bands > 0 and d.rows > 0, "dedup", "ngram, bands and rows must be positive")
        need(0.0 < d.threshold <= 1.0, "dedup.threshold", f"must be in (0, 1], got {d.threshold}")
        need(self.decontam.min_matches > 0, "decontam.min_matches", "must be positive")
        kinds = {s.kind for s in self.sources}
        for k, v in self.mixture.items():
            need(k in kinds, f"mixture.{k}", f"no source has kind {k!r}; kinds present: {', '.join(sorted(kinds))}")
            need(v >= 0, f"mixture.{k}", f"weights must be >= 0, got {v}")
        if self.mixture:
            missing = sorted(kinds - set(self.mixture))
            need(not missing, "mixture", f"no weight for kind(s) {missing} (give 0 to leave a kind out)")
            need(sum(self.mixture.values()) > 0, "mixture", "weights must not all be 0")
        need(self.mixture_tokens is None or self.mixture_tokens > 0, "mixture_tokens", "must be positive")
        need(self.seq_len > 0, "seq_len", f"must be positive, got {self.seq_len}")
        need(self.shard_tokens > 0, "shard_tokens", f"must be positive, got {self.shard_tokens}")
        need(self.workers > 0, "workers", f"must be positive, got {self.workers}")
        need(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        need(self.batch_docs > 0, "batch_docs", "must be positive")
        need(bool(self.output), "output", "an output directory is required")
        need(bool(self.tokenizer), "tokenizer", "a tokenizer source is required")

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return build(cls, data, "")

    @classmethod
    def load(cls, path: str | Path) -> DataConfig:
        """Read a `.toml` or `.json` file; relative paths in it stay relative to the working directory."""
        return cls.from_dict(configfile.read_table(path, _error, (".toml", ".json")))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (filters flattened back to their tables), recorded in the manifest."""
        d = dataclasses.asdict(dataclasses.replace(self, filters=[]))
        d["filters"] = [{"name": f.name, "kinds": f.kinds, "sources": f.sources, **_public_fields(f.filter)}
                        for f in self.filters]
        return d


def _public_fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.name.startswith("_")}


def default_config(output: str, tokenizer: str, **overrides) -> DataConfig:
    """The standard recipe over the whole default corpus: rules and safety on prose, dedup everywhere."""
    data = {
        "output": output,
        "tokenizer": tokenizer,
        "sources": [{"name": p.name, "kind": p.kind, "builtin": p.name} for p in PARTS.values()],
        "filters": [
            {"name": "gopher_quality", "kinds": ["web"]},
            {"name": "gopher_repetition", "kinds": ["web"]},  # formal maths repeats by nature
            {"name": "c4", "sources": ["openwebtext"]},  # the paper's 3 sentences, 5 words per line
            {"name": "safety", "kinds": ["web"]},
        ],
        "mixture": {"web": 0.6, "code": 0.25, "maths": 0.15},
    }
    data.update(overrides)
    return DataConfig.from_dict(data)


def _error(message: str) -> ConfigError:
    return ConfigError(f"data config: {message}")


def build(cls: type, data: Any, where: str) -> Any:
    """Construct dataclass `cls` from a dict, checking keys and types; errors name the field."""
    return configfile.build(cls, data, where, _error, {FilterConfig: _build_filter})


def _build_filter(data: Any, where: str) -> FilterConfig:
    if not isinstance(data, dict):
        raise _error(f"{where}: expected a table, got {data!r}")
    name = data.get("name")
    if name not in FILTERS:
        raise _error(f"{where}.name: unknown filter {name!r}; known: {', '.join(FILTERS)}")
    scope = {k: data[k] for k in ("kinds", "sources") if k in data}
    options = {k: v for k, v in data.items() if k not in ("name", "kinds", "sources")}
    spec = build(_FilterScope, scope, where)
    try:
        instance = build(FILTERS[name], options, where)
    except GemmaForgeError as e:
        if isinstance(e, ConfigError):
            raise
        raise _error(f"{where} ({name}): {e}") from None
    return FilterConfig(name, instance, spec.kinds, spec.sources)


@dataclass
class _FilterScope:
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    sources: list[str] = field(default_factory=list)
