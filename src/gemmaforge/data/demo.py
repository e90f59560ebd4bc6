"""The pre-training demo's data, in one call: real text every Python install carries, a matching
tokenizer, and packed train/validation shards.

The corpus is the CPython standard library's .py files ("code") plus the prose under
/usr/share/doc ("web": READMEs, NEWS, changelogs; licences skipped, exact duplicates dropped), split
by document into train and validation. gemmaforge's own tools make the rest: a Gemma-style
tokenizer trained on the training split (`train_tokenizer`) and packed shards (`prepare`, no
filters: the text is trusted). `gemmaforge data demo --output DIR` runs it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import sysconfig
from pathlib import Path

from ..tokenizer.train import train_tokenizer
from ..util.paths import writable_dir
from .config import DataConfig, DedupConfig, SourceConfig
from .errors import DataError
from .pipeline import prepare

MAX_DOC = 100_000  # characters: no giant changelog dominates
VAL_FRACTION = 0.02


def documents(max_bytes: int) -> list[tuple[str, str]]:
    """(kind, text) of distinct texts, in a fixed shuffled order, up to `max_bytes` in all."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [("code", p) for p in sorted(stdlib.rglob("*.py")) if "site-packages" not in p.parts]
    files += [("web", p) for p in sorted(Path("/usr/share/doc").rglob("*")) if p.is_file() and _is_prose(p.name)]
    seen, docs = set(), []
    for kind, p in files:
        try:
            raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            text = raw.decode("utf-8")[:MAX_DOC]
        except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError):
            continue
        key = hashlib.sha1(text.encode()).digest()
        if len(text) > 200 and key not in seen:
            seen.add(key)
            docs.append((kind, text))
    random.Random(0).shuffle(docs)
    kept, total = [], 0
    for kind, text in docs:
        if total + len(text) <= max_bytes:
            kept.append((kind, text))
            total += len(text)
    return kept


def _is_prose(name: str) -> bool:
    """READMEs, NEWS, changelogs and plain-text docs; not licences, markup or binaries."""
    stem = name.removesuffix(".gz").lower()
    return not stem.startswith("copyright") and (
        stem.startswith(("readme", "news", "changelog", "changes", "history", "todo", "faq"))
        or stem.endswith((".txt", ".md", ".rst")))


def build_demo_data(directory: str | Path, *, vocab_size: int = 8192, max_bytes: int = 24_000_000,
                    seq_len: int = 256, overwrite: bool = False, progress: bool = True) -> dict:
    """Write tokenizer/, train/ and val/ (each prepared data directory carrying its tokenizer.model)
    and corpus.json under `directory`; returns corpus.json's statistics."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise DataError(f"{directory} already exists and is not empty; pass --force to replace it")
    writable_dir(directory, DataError, "data demo --output")
    docs = documents(max_bytes)
    if len(docs) < 2:
        raise DataError("the demo corpus found almost no text (no Python standard library sources?)")
    n_val = max(1, int(len(docs) * VAL_FRACTION))
    parts = {"val": docs[:n_val], "train": docs[n_val:]}
    tokenizer = train_tokenizer((text for _, text in parts["train"]), vocab_size, directory / "tokenizer", family=1)
    stats = {}
    raw = directory / "raw"
    raw.mkdir(exist_ok=True)
    try:
        for part, part_docs in parts.items():
            sources = []
            for kind in ("code", "web"):
                path = raw / f"{part}-{kind}.jsonl"
                path.write_text("".join(json.dumps({"text": t}) + "\n" for k, t in part_docs if k == kind), "utf-8")
                sources.append(SourceConfig(name=f"{part}-{kind}", kind=kind, paths=[str(path)]))
            manifest = prepare(DataConfig(output=str(directory / part), tokenizer=str(directory / "tokenizer"),
                                          sources=sources, seq_len=seq_len, dedup=DedupConfig(minhash=False),
                                          overwrite=True, progress=progress), tokenizer=tokenizer)
            stats[part] = {"documents": len(part_docs), "bytes": sum(len(t.encode()) for _, t in part_docs),
                           "tokens": manifest.total_tokens}
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    stats["vocab_size"] = vocab_size
    (directory / "corpus.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats
