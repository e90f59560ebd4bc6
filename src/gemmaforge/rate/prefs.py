"""Preference data in and out: chosen/rejected JSONL, model responses, bigbench's hhh_alignment.

Imports are checked whole before anything is written (a bad line names file:line and changes
nothing) and written in one transaction; importing the same file twice adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.jsonl import read_jsonl
from ..util.paths import write_atomic
from .errors import RateError
from .prompts import Prompt, prompt_from_record
from .store import RatingStore

SOURCES = ("human", "ai")


@dataclass(frozen=True)
class Preference:
    prompt: Prompt
    chosen: str
    rejected: str
    rater: str
    source: str = "human"
    chosen_model: str = "import"
    rejected_model: str = "import"
    meta: dict | None = None


@dataclass(frozen=True)
class Response:
    prompt: Prompt
    model: str
    text: str


def _text(record: dict, field: str, where: str) -> str:
    """A response field: a string, or TRL's conversational form (a list of turns; the last one's text)."""
    if field not in record:
        raise RateError(f"{where}: missing field {field!r}")
    value = record[field]
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise RateError(f"{where}: field {field!r} must be non-empty text")
    return value


def _name(record: dict, field: str, default: str | None, where: str) -> str:
    if field not in record and default is None:
        raise RateError(f"{where}: missing field {field!r}")
    value = record.get(field, default)
    if not isinstance(value, str) or not value.strip():
        raise RateError(f"{where}: field {field!r} must be non-empty text")
    return value.strip()


def read_preferences(path: Path) -> list[Preference]:
    """Rows {"prompt" or "messages", "chosen", "rejected"} with optional "rater", "source" ("human" or
    "ai"), "chosen_model", "rejected_model"; other fields are kept as metadata."""
    rows = []
    for n, r in read_jsonl(path, RateError):
        where = f"{path}:{n}"
        chosen, rejected = _text(r, "chosen", where), _text(r, "rejected", where)
        if chosen == rejected:
            raise RateError(f"{where}: chosen and rejected are the same text, which says nothing about "
                            "preference; remove the row")
        source = r.get("source", "human")
        if source not in SOURCES:
            raise RateError(f"{where}: field 'source' must be one of {SOURCES}, got {source!r}")
        known = {"prompt", "messages", "chosen", "rejected", "rater", "source", "chosen_model", "rejected_model"}
        rows.append(Preference(prompt_from_record(r, where), chosen, rejected,
                               _name(r, "rater", f"import:{path.name}", where), source,
                               _name(r, "chosen_model", "import", where), _name(r, "rejected_model", "import", where),
                               {k: v for k, v in r.items() if k not in known} or None))
    return _some(rows, path)


def read_responses(path: Path) -> list[Response]:
    """Rows {"prompt" or "messages", "model", "response"}: responses to pair and rate."""
    rows = []
    for n, r in read_jsonl(path, RateError):
        where = f"{path}:{n}"
        rows.append(Response(prompt_from_record(r, where), _name(r, "model", None, where), _text(r, "response", where)))
    return _some(rows, path)


def _some(rows: list, path: Path) -> list:
    if not rows:
        raise RateError(f"{path}: no rows to import")
    return rows


SHIPPED_HHH = Path(__file__).parent / "hhh_alignment"  # bigbench's 221 HHH pairs (see its README.md)


def read_hhh(path: Path) -> list[Preference]:
    """bigbench's hhh_alignment: a task.json (or a folder of them) whose examples score the preferred
    response 1 and the other 0. Each example becomes one human preference (Anthropic's HHH raters)."""
    files = sorted(path.rglob("task.json")) if path.is_dir() else [path]
    rows = []
    for f in files:
        try:
            task = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RateError(f"{f}: not a readable bigbench task.json ({e})") from None
        for i, ex in enumerate(task.get("examples", [])):
            where = f"{f}: example {i}"
            scores = ex.get("target_scores")
            if not isinstance(ex.get("input"), str) or not isinstance(scores, dict):
                raise RateError(f"{where}: missing 'input' text or 'target_scores'")
            best = [t for t, s in scores.items() if s == 1]
            if len(best) != 1:
                raise RateError(f"{where}: expected exactly one response scored 1, got {len(best)}")
            rows += [Preference(Prompt(ex["input"]), best[0], t, "bigbench:hhh_alignment", "human",
                                meta={"task": task.get("name", f.parent.name)})
                     for t, s in scores.items() if s != 1]
    if not rows:
        raise RateError(f"{path}: no hhh_alignment examples found (expected task.json files with 'examples')")
    return rows


def import_preferences(store: RatingStore, rows: Iterable[Preference], labels: bool = True) -> dict[str, int]:
    """Stores each row's pair and, with `labels`, its rating. Without `labels` the pairs are only
    queued for raters (to re-rate existing data, or measure agreement with it)."""
    pairs = ratings = 0
    with store.transaction() as c:
        for row in rows:
            prompt_id = store.add_prompt(c, row.prompt)
            chosen = store.add_response(c, prompt_id, row.chosen_model, row.chosen)
            rejected = store.add_response(c, prompt_id, row.rejected_model, row.rejected)
            before = c.total_changes
            pair_id = store.add_pair(c, prompt_id, chosen, rejected)
            pairs += c.total_changes > before
            if labels:  # a pair's a is its lower response id
                verdict = "a" if chosen < rejected else "b"
                ratings += store.add_rating(c, pair_id, row.rater, row.source, verdict, meta=row.meta)
    return {"new_pairs": pairs, "new_ratings": ratings}


def import_responses(store: RatingStore, rows: Iterable[Response]) -> dict[str, int]:
    """Stores the responses, then pairs every two models' responses to each prompt."""
    rows = list(rows)
    with store.transaction() as c:
        for row in rows:
            store.add_response(c, store.add_prompt(c, row.prompt), row.model, row.text)
    added, identical = store.pair_models(sorted({r.model for r in rows}))
    return {"new_pairs": added, "identical_skipped": identical}


def preference_rows(ratings: Iterable[dict[str, Any]], ties: bool = False) -> Iterator[dict[str, Any]]:
    """Export rows: prompt, chosen, rejected and where they came from. Ties and "both bad" carry no
    order; with `ties` they are written with "verdict" set and chosen/rejected in the pair's order."""
    for r in ratings:
        if r["verdict"] in ("tie", "both_bad") and not ties:
            continue
        a_wins = r["verdict"] != "b"
        row = {"prompt": r["prompt"]}
        if r["messages"]:
            row["messages"] = json.loads(r["messages"])
        row.update({
            "chosen": r["text_a"] if a_wins else r["text_b"], "rejected": r["text_b"] if a_wins else r["text_a"],
            "chosen_model": r["model_a"] if a_wins else r["model_b"],
            "rejected_model": r["model_b"] if a_wins else r["model_a"],
            "verdict": "preferred" if r["verdict"] in ("a", "b") else r["verdict"],
            "rater": r["rater"], "source": r["source"], "pair_id": r["pair_id"], "rated_at": r["rated_at"],
            "shown_first": r["shown_first"], "reason": r["reason"]})
        meta = json.loads(r["meta"])
        if meta:
            row["meta"] = meta
        yield row


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    """Writes the rows atomically (a reader never sees half a file); returns how many."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    try:
        write_atomic(path, "".join(line + "\n" for line in lines).encode())
    except OSError as e:
        raise RateError(f"{path}: cannot write: {e.strerror or e}") from None
    return len(lines)
