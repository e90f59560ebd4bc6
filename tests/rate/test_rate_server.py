"""The HTTP API (through Starlette's test client) and the command line's bad-input messages."""

import json
import re
import sqlite3
from pathlib import Path

import pytest
from rate_helpers import DATA, add_pairs

from gemmaforge.cli import main
from gemmaforge.rate.lock import serve_lock
from gemmaforge.rate.prefs import SHIPPED_HHH, read_hhh
from gemmaforge.rate.server import LOOPBACK, STATIC, create_app
from gemmaforge.rate.store import RatingStore

testclient = pytest.importorskip("starlette.testclient")


@pytest.fixture
def client(store):
    add_pairs(store, 3)
    return testclient.TestClient(create_app(store))


def test_rating_flow(client, store):
    page = client.get("/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    body = client.get("/api/next", params={"rater": "ann"}).json()
    assert body["progress"] == {"rated": 0, "total": 3}
    assert {"pair_id", "left", "right", "prompt"} <= body["pair"].keys()
    r = client.post("/api/rate", json={"rater": "ann", "pair_id": body["pair"]["pair_id"], "choice": "right",
                                       "reason": "clearer"})
    assert r.status_code == 200 and r.json()["progress"] == {"rated": 1, "total": 3}
    row = store.ratings()[0]
    assert row["reason"] == "clearer" and row["verdict"] != row["shown_first"]  # right = the one shown second
    assert client.post("/api/undo", json={"rater": "ann"}).json() == {"ok": True, "pair_id": row["pair_id"]}
    assert store.ratings() == [] and client.get("/api/next", params={"rater": "ann"}).json() == body
    r = client.post("/api/undo", json={"rater": "ann"})
    assert r.status_code == 400 and "no rating to undo" in r.json()["error"]


def test_bad_requests_are_json_4xx(client):
    pair = client.get("/api/next", params={"rater": "ann"}).json()["pair"]["pair_id"]
    cases = [({"rater": "ann", "pair_id": 999, "choice": "left"}, 404, "pair 999 does not exist"),
             ({"rater": "ann", "pair_id": pair, "choice": "middle"}, 400, "choice must be one of"),
             ({"rater": "", "pair_id": pair, "choice": "left"}, 400, "rater name is required"),
             ({"rater": "ann", "pair_id": "1", "choice": "left"}, 400, "pair_id"),
             ({"rater": "ann", "pair_id": pair, "choice": "left"}, 200, None),
             ({"rater": "ann", "pair_id": pair, "choice": "right"}, 409, "already rated")]
    for body, status, message in cases:
        r = client.post("/api/rate", json=body)
        assert r.status_code == status, (body, r.text)
        if message:
            assert message in r.json()["error"]
    r = client.post("/api/rate", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "must be JSON" in r.json()["error"]
    assert client.get("/api/next").status_code == 400
    r = client.post("/api/rate", content=b'{"rater": "ann"}', headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "application/json" in r.json()["error"]  # what a cross-site form could send


def test_page_script_never_parses_text_as_html():
    """Static half of the injection proof (the browser test runs it): no HTML sinks in the page's code."""
    code = (STATIC / "app.js").read_text()
    sinks = re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                       r"createContextualFragment|DOMParser|srcdoc", code.split("\n", 3)[3])  # past the header comment
    assert sinks == []
    html = (STATIC / "index.html").read_text()
    assert "<script>" not in html.replace('<script src="/static/app.js" defer></script>', "")


def test_loopback_server_refuses_other_host_names(store):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 must not reach the API."""
    add_pairs(store, 1)
    client = testclient.TestClient(create_app(store, LOOPBACK), base_url="http://127.0.0.1:8765")
    assert client.get("/api/next", params={"rater": "ann"}).status_code == 200
    assert client.get("/api/next", params={"rater": "ann"}, headers={"host": "evil.example"}).status_code == 400


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_import_export_and_report(tmp_path, capsys):
    db = str(tmp_path / "r.sqlite")
    code, out, _ = run(["rate", "import", str(DATA / "hhh_alignment"), "--db", db], capsys)
    assert code == 0 and "as hhh: new pairs 12, new ratings 12" in out
    prefs = tmp_path / "p.jsonl"
    prefs.write_text(json.dumps({"prompt": "q", "chosen": "yes", "rejected": "no", "rater": "kim"}) + "\n")
    assert run(["rate", "import", str(prefs), "--db", db], capsys)[0] == 0
    code, out, _ = run(["rate", "export", "--db", db, "--out", str(tmp_path / "out.jsonl"),
                        "--report", str(tmp_path / "report.json")], capsys)
    assert code == 0 and "13 ratings of 13 pairs: 13 preferences, 0 ties" in out and "kim: 1" in out
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 13 and rows[-1]["chosen"] == "yes"
    assert json.loads((tmp_path / "report.json").read_text())["per_rater"]["kim"]["total"] == 1
    again = ["rate", "export", "--db", db, "--out", str(tmp_path / "out.jsonl")]
    code, _, err = run(again, capsys)
    assert code == 2 and "out.jsonl already exists; pass --force" in err
    assert run([*again, "--force", "--source", "human"], capsys)[0] == 0


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "x", "rejected": "x"}\n')
    code, _, err = run(["rate", "import", str(bad), "--db", str(db)], capsys)
    assert code == 2 and err.strip().endswith("bad.jsonl:1: chosen and rejected are the same text, which says "
                                              "nothing about preference; remove the row")
    assert len(err.strip().splitlines()) == 1
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 99")
    code, _, err = run(["rate", "export", "--db", str(db), "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 2 and "schema version 99 is newer" in err and "Traceback" not in err
    RatingStore(tmp_path / "empty.sqlite")
    code, _, err = run(["rate", "serve", "--db", str(tmp_path / "empty.sqlite"), "--port", "0"], capsys)
    assert code == 2 and "no pairs to rate" in err


def test_cli_second_server_is_refused_and_nothing_lost(store, capsys):
    add_pairs(store, 2)
    store.next_pair("ann")
    with serve_lock(store.path, "http://127.0.0.1:1/"):
        code, _, err = run(["rate", "serve", "--db", str(store.path), "--port", "0"], capsys)
    assert code == 2 and "is already served by gemmaforge rate serve" in err and "nothing was changed" in err
    assert store.next_pair("ann") is not None and Path(store.path).exists()


def test_cli_serve_generates_pairs_then_serves(tmp_path, tiny_models, capsys, monkeypatch):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "def f(x):"}\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    served = []

    def fake_run(app, host, port, log_level):  # uvicorn itself runs in the browser test
        client = testclient.TestClient(app, base_url=f"http://{host}:{port}")
        served.append(client.get("/api/next", params={"rater": "ann"}).json())

    monkeypatch.setattr("uvicorn.run", fake_run)
    argv = ["rate", "serve", "--prompts", str(prompts), "--models", ",".join(tiny_models), "--db",
            str(tmp_path / "r.sqlite"), "--max-new-tokens", "4", "--port", "0", "--no-progress"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    pairs = int(out.split(" new pairs")[0])
    assert pairs >= 1 and served[0]["progress"] == {"rated": 0, "total": pairs}
    assert served[0]["pair"]["left"] != served[0]["pair"]["right"]
    assert run(argv, capsys)[1].startswith("0 new pairs")  # a restart generates nothing again
    code, _, err = run(argv[:4] + ["--models", tiny_models[0]] + argv[6:], capsys)
    assert code == 2 and "at least two different model sources" in err


def test_cli_imports_the_shipped_hhh_alignment(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder of that name here: the copy that ships with gemmaforge
    code, out, _ = run(["rate", "import", "hhh_alignment", "--db", "a.sqlite", "--limit", "5"], capsys)
    assert code == 0 and "as hhh: new pairs 5, new ratings 5" in out
    code, out, _ = run(["rate", "import", "hhh_alignment", "--db", "b.sqlite"], capsys)
    assert code == 0 and "as hhh: new pairs 221, new ratings 221" in out  # Askell et al.'s 221 comparisons
    shipped = {(p.prompt.text, p.chosen, p.rejected) for p in read_hhh(SHIPPED_HHH)}
    assert {(p.prompt.text, p.chosen, p.rejected) for p in read_hhh(DATA / "hhh_alignment")} <= shipped


def test_readers_refuse_a_missing_database_and_writers_create_its_folder(tmp_path, capsys):
    missing = str(tmp_path / "typo.sqlite")
    for argv in (["rate", "export", "--db", missing, "--out", str(tmp_path / "p.jsonl")],
                 ["rate", "ai-label", "--db", missing, "--judge", "gemma3-270m"],
                 ["rate", "serve", "--db", missing]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "typo.sqlite: no ratings database there" in err, argv
    assert not (tmp_path / "typo.sqlite").exists()
    nested = tmp_path / "runs" / "new" / "r.sqlite"
    assert run(["rate", "import", str(DATA / "hhh_alignment"), "--db", str(nested)], capsys)[0] == 0
    assert nested.is_file()
