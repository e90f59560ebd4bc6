"""The ratings database: schema, constraints, the shown order, resuming, several raters, crashes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rate_helpers import add_pairs

from gemmaforge.rate import AlreadyRated, RateError, RatingStore, ServerRunning, UnknownPair
from gemmaforge.rate.lock import serve_lock
from gemmaforge.rate.store import SCHEMA_VERSION


def test_schema_wal_and_version(store):
    with store.connect() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    RatingStore(path)
    with sqlite3.connect(path) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RateError, match=f"schema version {SCHEMA_VERSION + 1} is newer.*upgrade gemmaforge"):
        RatingStore(path)


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
    with pytest.raises(RateError, match="not a gemmaforge ratings database"):
        RatingStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is no database" * 100)
    with pytest.raises(RateError, match="not a readable SQLite database"):
        RatingStore(junk)


def test_shown_order_maps_positions_back_to_the_pair(store):
    add_pairs(store, 6)
    seen = set()
    for _ in range(6):
        shown = store.next_pair("ann")
        with store.connect() as c:
            first = c.execute("SELECT shown_first FROM assignments WHERE rater = 'ann' AND pair_id = ?",
                              (shown["pair_id"],)).fetchone()[0]
        left_is_a = shown["left"].startswith("x")  # model-x's response is the pair's a (stored first)
        assert left_is_a == (first == "a")
        store.rate("ann", shown["pair_id"], "left", " because ")
        seen.add(first)
    rows = store.ratings()
    assert len(rows) == 6 and {r["reason"] for r in rows} == {"because"}
    assert all(r["verdict"] == r["shown_first"] for r in rows)  # "left" is whatever was shown first
    assert all(r["rated_at"] >= r["shown_at"] for r in rows)
    assert store.next_pair("ann") is None and store.progress("ann") == {"rated": 6, "total": 6}


def test_restart_resumes_where_each_rater_was(tmp_path):
    path = tmp_path / "r.sqlite"
    first = RatingStore(path)
    add_pairs(first, 5)
    ann, bob = first.next_pair("ann"), first.next_pair("bob")
    again = RatingStore(path)  # a new server process on the same file
    assert again.next_pair("ann") == ann and again.next_pair("bob") == bob


def test_one_rating_per_rater_and_pair(store):
    (pair,) = add_pairs(store, 1)
    store.next_pair("ann")
    store.rate("ann", pair, "tie")
    with pytest.raises(AlreadyRated, match="already rated pair"):
        store.rate("ann", pair, "left")
    assert [r["verdict"] for r in store.ratings()] == ["tie"]  # the first one stands
    with pytest.raises(UnknownPair, match="pair 999 does not exist"):
        store.rate("ann", 999, "left")
    with pytest.raises(RateError, match="never shown"):
        store.rate("bob", pair, "left")
    with pytest.raises(RateError, match="choice must be one of"):
        store.rate("ann", pair, "both")
    with pytest.raises(RateError, match="reserved for AI"):
        store.next_pair("ai:me")


def test_several_raters_at_once(store):
    add_pairs(store, 8)
    errors = []

    def work(name):
        try:
            while (pair := store.next_pair(name)) is not None:
                store.rate(name, pair["pair_id"], "right")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.ratings()
    assert len(rows) == 32 and len({(r["rater"], r["pair_id"]) for r in rows}) == 32


def test_a_killed_process_loses_no_submitted_rating(store):
    add_pairs(store, 3)
    code = (f"import os, signal; from gemmaforge.rate import RatingStore; s = RatingStore({str(store.path)!r})\n"
            "for _ in range(2):\n    p = s.next_pair('ann'); s.rate('ann', p['pair_id'], 'left')\n"
            "s.next_pair('ann'); os.kill(os.getpid(), signal.SIGKILL)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(store.ratings()) == 2 and store.progress("ann")["rated"] == 2


def test_two_servers_on_one_database(store):
    with serve_lock(store.path, "http://127.0.0.1:1111/"):
        with pytest.raises(ServerRunning, match=rf"already served by gemmaforge rate serve \(pid {os.getpid()} .*"
                                                r"127.0.0.1:1111.*use another --db"):
            with serve_lock(store.path, "http://127.0.0.1:2222/"):
                pass
    with serve_lock(store.path, "http://127.0.0.1:2222/"):  # released when the first one stops
        pass


def test_meta_is_json(store):
    (pair,) = add_pairs(store, 1)
    with store.transaction() as c:
        assert store.add_rating(c, pair, "ai:j", "ai", "a", meta={"p": 0.7})
    assert json.loads(store.ratings()[0]["meta"]) == {"p": 0.7}


def test_undo_withdraws_only_the_raters_last_human_rating(store):
    pairs = add_pairs(store, 3)
    first = store.next_pair("ann")
    store.rate("ann", first["pair_id"], "left")
    second = store.next_pair("ann")
    store.rate("ann", second["pair_id"], "tie")
    with store.transaction() as c:
        store.add_rating(c, pairs[2], "ai:j", "ai", "a")
    store.next_pair("bob")
    assert store.undo("ann") == second["pair_id"]
    assert store.next_pair("ann") == second  # back first, on the same sides
    assert [(r["rater"], r["pair_id"]) for r in store.ratings()] == [("ann", first["pair_id"]), ("ai:j", pairs[2])]
    with pytest.raises(RateError, match="'bob' has no rating to undo"):
        store.undo("bob")
