"""Decontamination: the evaluation items as word n-grams, for the pre-training data pipeline to
drop documents that contain them, and a check of which items a corpus contains.

Normalisation (the same on both sides): Unicode NFKC, lowercase, then the word tokens are the
maximal runs of letters and digits (`[^\\W_]+`: punctuation, underscores and whitespace only
separate words). An n-gram is n consecutive tokens joined by one space. Each string field of an
item is cut into n-grams separately (no n-gram spans two fields); a field of fewer than n tokens
contributes itself whole (as GPT-3's decontamination did), if it has at least `min_tokens`.

File format (`write_ngrams`/`read_ngrams`): JSON Lines, one item per line,
    {"item": "gsm8k/12", "n": 13, "ngrams": ["janet s ducks lay 16 eggs per day she eats three for", …]}
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..data.text import words
from ..util.paths import write_atomic
from .data import EvalDataError, read_jsonl
from .harness import check_number
from .tasks import Task, get_task

DEFAULT_N = 13
MIN_TOKENS = 8  # shorter fields ("A", "yes", a subject name) would match everywhere


def ngrams(text: str, n: int = DEFAULT_N, min_tokens: int = MIN_TOKENS) -> set[str]:
    toks = words(text)
    if len(toks) < n:
        return {" ".join(toks)} if len(toks) >= min_tokens else set()
    return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def export_ngrams(tasks: Sequence[str | Task], n: int = DEFAULT_N, min_tokens: int = MIN_TOKENS
                  ) -> dict[str, set[str]]:
    """`{"task/item_id": n-grams}` over every item of every task (all its text fields)."""
    check_number("ngram length n", n, 1)
    check_number("min_tokens", min_tokens, 0)
    index: dict[str, set[str]] = {}
    for t in tasks:
        task = get_task(t) if isinstance(t, str) else t
        for item in task.load():
            grams: set[str] = set()
            for s in _strings(item.doc):
                grams |= ngrams(s, n, min_tokens)
            index[f"{task.name}/{item.id}"] = grams
    return index


def write_ngrams(index: dict[str, set[str]], path: str | Path, n: int = DEFAULT_N) -> Path:
    """The index as JSON Lines at `path` (parent folders created; replaced whole, never half-written)."""
    path = Path(path)
    lines = (json.dumps({"item": item, "n": n, "ngrams": sorted(grams)}, ensure_ascii=False) + "\n"
             for item, grams in index.items())
    try:
        write_atomic(path, "".join(lines).encode())
    except OSError as e:
        raise EvalDataError(f"--export-ngrams: cannot write {path}: {e.strerror or e}") from None
    return path


def read_ngrams(path: str | Path) -> dict[str, set[str]]:
    return {rec["item"]: set(rec["ngrams"]) for _, rec in read_jsonl(Path(path))}


def find_contamination(texts: Iterable[str], index: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(document index, item id) for every eval item whose n-gram occurs in a document.

    Documents are streamed, so `texts` may be a generator over a large corpus.
    """
    owners: dict[str, list[str]] = defaultdict(list)
    for item, grams in index.items():
        for g in grams:
            owners[g].append(item)
    lengths = sorted({g.count(" ") + 1 for g in owners})
    hits: list[tuple[int, str]] = []
    for doc_idx, text in enumerate(tqdm(texts, desc="contamination", unit="doc", leave=False)):
        toks = words(text)
        found: set[str] = set()
        for k in lengths:
            for i in range(len(toks) - k + 1):
                found.update(owners.get(" ".join(toks[i:i + k]), ()))
        hits.extend((doc_idx, item) for item in sorted(found))
    return hits


def contaminated_items(texts: Iterable[str], index: dict[str, set[str]]) -> dict[str, list[int]]:
    """Report for a corpus: item id -> indices of the documents that contain it."""
    report: dict[str, list[int]] = defaultdict(list)
    for doc_idx, item in find_contamination(texts, index):
        report[item].append(doc_idx)
    return dict(report)
