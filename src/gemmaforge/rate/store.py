"""The ratings database: prompts, responses, pairs, what each rater was shown, and the ratings.

SQLite in WAL mode with synchronous=FULL: every rating is its own committed transaction, so a
crash loses nothing already submitted, and readers (export, several raters) never block the
writer. `PRAGMA user_version` holds the schema version; a database from a newer gemmaforge is
refused rather than misread.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any

from .errors import AlreadyRated, RateError, UnknownPair
from .prompts import Prompt

SCHEMA_VERSION = 1
NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
SCHEMA = f"""
CREATE TABLE prompts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    messages TEXT,
    created_at TEXT NOT NULL DEFAULT {NOW}
);
CREATE TABLE responses (
    id INTEGER PRIMARY KEY,
    prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}',
    created_at TEXT NOT NULL DEFAULT {NOW},
    UNIQUE (prompt_id, model, text)
);
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY,
    prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    response_a INTEGER NOT NULL REFERENCES responses(id),
    response_b INTEGER NOT NULL REFERENCES responses(id),
    created_at TEXT NOT NULL DEFAULT {NOW},
    CHECK (response_a < response_b),
    UNIQUE (response_a, response_b)
);
CREATE TABLE assignments (
    rater TEXT NOT NULL,
    pair_id INTEGER NOT NULL REFERENCES pairs(id),
    shown_first TEXT NOT NULL CHECK (shown_first IN ('a', 'b')),
    shown_at TEXT NOT NULL DEFAULT {NOW},
    PRIMARY KEY (rater, pair_id)
);
CREATE TABLE ratings (
    id INTEGER PRIMARY KEY,
    pair_id INTEGER NOT NULL REFERENCES pairs(id),
    rater TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('human', 'ai')),
    verdict TEXT NOT NULL CHECK (verdict IN ('a', 'b', 'tie', 'both_bad')),
    reason TEXT,
    shown_first TEXT CHECK (shown_first IN ('a', 'b')),
    shown_at TEXT,
    rated_at TEXT NOT NULL DEFAULT {NOW},
    meta TEXT NOT NULL DEFAULT '{{}}',
    UNIQUE (rater, pair_id)
);
CREATE INDEX ratings_by_pair ON ratings (pair_id);
PRAGMA user_version = {SCHEMA_VERSION};
"""
# What a rater clicks (positions on the page) -> what is stored (the pair's own a/b)
CHOICES = ("left", "right", "tie", "both_bad")
MAX_RATER = 64


class RatingStore:
    """One ratings database file; each call opens its own connection, so threads may share it."""

    def __init__(self, path: str | Path, create: bool = True):
        """`create`: make the file (and its folder) when missing; readers pass False, so a mistyped
        path is an error rather than a new, empty database."""
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise RateError(f"{self.path}: no ratings database there (`rate import` or `rate serve` creates one)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RateError(f"{self.path}: cannot create its folder: {e.strerror or e}") from None
        with self.connect() as c:
            self._check_schema(c)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA foreign_keys = ON")
            c.execute("PRAGMA synchronous = FULL")
            yield c
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise RateError(f"{self.path}: not a readable SQLite database ({e})") from None
            raise
        finally:
            c.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at its start (BEGIN IMMEDIATE) so it never fails half-way on a lock."""
        with self.connect() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def _check_schema(self, c: sqlite3.Connection) -> None:
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RateError(f"{self.path}: ratings database schema version {version} is newer than this "
                            f"gemmaforge reads (up to {SCHEMA_VERSION}); upgrade gemmaforge to open it")
        if version == SCHEMA_VERSION:
            return
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if tables:
            raise RateError(f"{self.path}: an SQLite database but not a gemmaforge ratings database "
                            f"(tables: {', '.join(sorted(tables))})")
        c.execute("PRAGMA journal_mode = WAL")  # persistent; must be set outside a transaction
        c.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")

    # --- writing prompts, responses and pairs ------------------------------------------------

    @staticmethod
    def add_prompt(c: sqlite3.Connection, prompt: Prompt) -> int:
        c.execute("INSERT OR IGNORE INTO prompts (key, prompt, messages) VALUES (?, ?, ?)",
                  (prompt.key, prompt.text, prompt.messages))
        return c.execute("SELECT id FROM prompts WHERE key = ?", (prompt.key,)).fetchone()[0]

    @staticmethod
    def add_response(c: sqlite3.Connection, prompt_id: int, model: str, text: str, meta: dict | None = None) -> int:
        c.execute("INSERT OR IGNORE INTO responses (prompt_id, model, text, meta) VALUES (?, ?, ?, ?)",
                  (prompt_id, model, text, json.dumps(meta or {})))
        return c.execute("SELECT id FROM responses WHERE prompt_id = ? AND model = ? AND text = ?",
                         (prompt_id, model, text)).fetchone()[0]

    @staticmethod
    def add_pair(c: sqlite3.Connection, prompt_id: int, first: int, second: int) -> int:
        a, b = sorted((first, second))
        c.execute("INSERT OR IGNORE INTO pairs (prompt_id, response_a, response_b) VALUES (?, ?, ?)",
                  (prompt_id, a, b))
        return c.execute("SELECT id FROM pairs WHERE response_a = ? AND response_b = ?", (a, b)).fetchone()[0]

    def answered(self, model: str) -> set[int]:
        """Ids of the prompts that already have a response from `model` (so generation resumes)."""
        with self.connect() as c:
            return {r[0] for r in c.execute("SELECT prompt_id FROM responses WHERE model = ?", (model,))}

    def pair_models(self, models: list[str]) -> tuple[int, int]:
        """Pairs every two of `models`' responses to each prompt; returns (pairs added, identical skipped).

        Two identical texts are not worth a rater's time, so they are not paired.
        """
        added = skipped = 0
        with self.transaction() as c:
            rows = c.execute(f"SELECT id, prompt_id, model, text FROM responses WHERE model IN "
                             f"({', '.join('?' * len(models))}) ORDER BY id", models).fetchall()
            by_prompt: dict[int, dict[str, sqlite3.Row]] = {}
            for r in rows:
                by_prompt.setdefault(r["prompt_id"], {}).setdefault(r["model"], r)
            for prompt_id, answers in by_prompt.items():
                for x, y in combinations(answers.values(), 2):
                    if x["text"] == y["text"]:
                        skipped += 1
                        continue
                    before = c.total_changes
                    self.add_pair(c, prompt_id, x["id"], y["id"])
                    added += c.total_changes - before
        return added, skipped

    @staticmethod
    def add_rating(c: sqlite3.Connection, pair_id: int, rater: str, source: str, verdict: str,
                   reason: str | None = None, meta: dict | None = None, shown_first: str | None = None,
                   shown_at: str | None = None) -> bool:
        """Stores one rating; False (and nothing changed) if this rater already rated this pair."""
        cur = c.execute("INSERT OR IGNORE INTO ratings (pair_id, rater, source, verdict, reason, shown_first, "
                        "shown_at, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (pair_id, rater, source, verdict, reason, shown_first, shown_at, json.dumps(meta or {})))
        return cur.rowcount == 1

    # --- the rating page ------------------------------------------------------------------------

    def next_pair(self, rater: str) -> dict[str, Any] | None:
        """The pair `rater` should see now, in the order shown, or None when all are rated.

        A pair shown but not yet rated comes back first, in the same order (so a reload or a server
        restart resumes where the rater was). Otherwise a new pair among those with the fewest human
        ratings, so a team covers every pair once before overlapping; the order is random and kept.
        """
        rater = check_rater(rater)
        with self.transaction() as c:
            row = c.execute("SELECT pair_id, shown_first FROM assignments a WHERE rater = ? AND NOT EXISTS "
                            "(SELECT 1 FROM ratings r WHERE r.rater = a.rater AND r.pair_id = a.pair_id) "
                            "ORDER BY shown_at, pair_id LIMIT 1", (rater,)).fetchone()
            if row is None:
                fresh = c.execute(
                    "SELECT p.id, (SELECT COUNT(*) FROM ratings r WHERE r.pair_id = p.id AND r.source = 'human') "
                    "AS n FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM ratings r WHERE r.pair_id = p.id "
                    "AND r.rater = ?) ORDER BY n", (rater,)).fetchall()
                if not fresh:
                    return None
                pair_id = random.choice([r["id"] for r in fresh if r["n"] == fresh[0]["n"]])
                shown_first = random.choice("ab")
                c.execute("INSERT INTO assignments (rater, pair_id, shown_first) VALUES (?, ?, ?)",
                          (rater, pair_id, shown_first))
            else:
                pair_id, shown_first = row
            pair = self._pair(c, pair_id)
        left, right = (pair["a"], pair["b"]) if shown_first == "a" else (pair["b"], pair["a"])
        return {"pair_id": pair_id, "prompt": pair["prompt"], "messages": pair["messages"],
                "left": left, "right": right}

    def rate(self, rater: str, pair_id: int, choice: str, reason: str | None = None) -> None:
        """Stores what `rater` picked on the page; `choice` names a position, mapped back to the pair's a/b."""
        rater = check_rater(rater)
        if choice not in CHOICES:
            raise RateError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        reason = (reason or "").strip() or None
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM pairs WHERE id = ?", (pair_id,)).fetchone() is None:
                raise UnknownPair(f"pair {pair_id} does not exist in {self.path.name}")
            shown = c.execute("SELECT shown_first, shown_at FROM assignments WHERE rater = ? AND pair_id = ?",
                              (rater, pair_id)).fetchone()
            if shown is None:
                raise RateError(f"pair {pair_id} was never shown to rater {rater!r}; ask /api/next first")
            first = shown["shown_first"]
            verdict = {"left": first, "right": "b" if first == "a" else "a"}.get(choice, choice)
            if not self.add_rating(c, pair_id, rater, "human", verdict, reason, None, first, shown["shown_at"]):
                raise AlreadyRated(f"rater {rater!r} already rated pair {pair_id}; the first rating stands")

    def undo(self, rater: str) -> int:
        """Withdraws `rater`'s latest rating (a mis-click) and returns its pair, which comes back next,
        on the same sides. Only the rater's own human ratings can be withdrawn."""
        rater = check_rater(rater)
        with self.transaction() as c:
            row = c.execute("SELECT id, pair_id FROM ratings WHERE rater = ? AND source = 'human' "
                            "ORDER BY rated_at DESC, id DESC LIMIT 1", (rater,)).fetchone()
            if row is None:
                raise RateError(f"rater {rater!r} has no rating to undo")
            c.execute("DELETE FROM ratings WHERE id = ?", (row["id"],))
        return row["pair_id"]

    def progress(self, rater: str) -> dict[str, int]:
        with self.connect() as c:
            total = c.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
            done = c.execute("SELECT COUNT(*) FROM ratings WHERE rater = ?", (rater,)).fetchone()[0]
        return {"rated": done, "total": total}

    @staticmethod
    def _pair(c: sqlite3.Connection, pair_id: int) -> dict[str, Any]:
        row = c.execute("SELECT pr.prompt, pr.messages, ra.text AS a, rb.text AS b FROM pairs p "
                        "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a "
                        "JOIN responses rb ON rb.id = p.response_b WHERE p.id = ?", (pair_id,)).fetchone()
        return {"prompt": row["prompt"], "messages": json.loads(row["messages"]) if row["messages"] else None,
                "a": row["a"], "b": row["b"]}

    # --- reading everything back ----------------------------------------------------------------

    def unrated_pairs(self, rater: str) -> list[dict[str, Any]]:
        """Every pair `rater` has not rated, with its prompt and both texts (for an AI judge)."""
        with self.connect() as c:
            rows = c.execute("SELECT p.id FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM ratings r WHERE "
                             "r.pair_id = p.id AND r.rater = ?) ORDER BY p.id", (rater,)).fetchall()
            return [{"pair_id": r[0], **self._pair(c, r[0])} for r in rows]

    def ratings(self) -> list[dict[str, Any]]:
        """Every rating with its prompt, both responses and their models, oldest first."""
        with self.connect() as c:
            rows = c.execute(
                "SELECT r.*, pr.prompt, pr.messages, ra.text AS text_a, rb.text AS text_b, ra.model AS model_a, "
                "rb.model AS model_b FROM ratings r JOIN pairs p ON p.id = r.pair_id "
                "JOIN prompts pr ON pr.id = p.prompt_id JOIN responses ra ON ra.id = p.response_a "
                "JOIN responses rb ON rb.id = p.response_b ORDER BY r.rated_at, r.id").fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.connect() as c:
            return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("prompts", "responses", "pairs", "ratings")}


def check_rater(rater: str) -> str:
    """A rater name as stored: trimmed, non-empty, short; "ai:" names belong to AI judges."""
    name = (rater or "").strip()
    if not name:
        raise RateError("a rater name is required")
    if len(name) > MAX_RATER:
        raise RateError(f"rater name is longer than {MAX_RATER} characters")
    if name.startswith("ai:"):
        raise RateError("rater names starting with 'ai:' are reserved for AI judges")
    return name
