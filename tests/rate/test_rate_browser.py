"""End to end in a real browser: the real server, headless Chromium rating pairs with mouse and keyboard,
untrusted markup shown as text, rows checked in SQLite, a crash and restart resumed. Screenshots are
saved under the test's tmp dir and copied to test-artifacts/."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gemmaforge.cli import main
from gemmaforge.rate import RatingStore, import_responses
from gemmaforge.rate.prefs import Response
from gemmaforge.rate.prompts import Prompt

CHROMIUM = "/usr/lib/chromium/chromium-headless-shell"
ROOT = Path(__file__).parents[2]
ATTACK = ('Sure! <script>window.__pwned = "script"</script> <img src=x onerror="window.__pwned = \'img\'">\n\n'
          '```html\n<img src=y onerror="window.__pwned = \'code\'">\n```\n\n**bold** [link](javascript:alert(1))')
RICH = ("Here is a **function** with `inline code`:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
        "- first point\n- second *point*\n\n1. step one\n2. step two\n\n> a quote")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no browser: {CHROMIUM} is missing (apt-get install chromium-headless-shell)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "gemmaforge", "rate", "serve", "--db", str(db), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stdout.read()}") from None
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start in 60 s")


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "ratings.sqlite"
    rows = []
    for i, (x, y) in enumerate([(RICH, "Just add them: `a + b`."), (ATTACK, "I cannot help with that."),
                                ("Paris.", "The capital of France is **Paris**."), ("42", "forty-two"),
                                ("Yes.", "No.")]):
        rows += [Response(Prompt(f"Question {i}: what do you say?"), "model-x", x),
                 Response(Prompt(f"Question {i}: what do you say?"), "model-y", y)]
    import_responses(RatingStore(path), rows)
    return path


def shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    shutil.copy(tmp_path / name, ROOT / "test-artifacts" / name)


def shown(page) -> tuple[str, str, str]:
    return page.inner_text("#prompt .md"), page.inner_text("#left"), page.inner_text("#right")


def check_nothing_injected(page) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#task script, #task img, #task a, [onerror]").count() == 0


def test_rating_in_a_real_browser(db, tmp_path, capsys):
    port = free_port()
    server = start_server(db, port)
    url = f"http://127.0.0.1:{port}/"
    dialogs = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url)
            page.fill("#rater", "alice")
            page.click("#start")
            actions = [("click", "A is better", "left", None), ("key", "2", "right", None),
                       ("key", "3", "tie", "too close to call"), ("key", "x", "both_bad", None),
                       ("click", "B is better", "right", None)]
            expected = {}
            for n, (how, what, choice, reason) in enumerate(actions, 1):
                page.wait_for_selector("#task:not([hidden])")
                prompt, left, right = shown(page)
                check_nothing_injected(page)
                if "Sure!" in left + right:
                    assert "<script>" in left + right and "onerror" in left + right  # shown as text
                    shot(page, tmp_path, "rate-untrusted-markup.png")
                if "def add" in left + right:
                    assert page.locator("#task pre code").count() == 1 and page.locator("#task li").count() == 4
                    shot(page, tmp_path, "rate-page.png")
                if reason:
                    page.keyboard.press("r")
                    page.keyboard.type(reason)  # typing "3"-free text in the box chooses nothing
                    page.keyboard.press("Escape")
                if how == "click":
                    page.get_by_role("button", name=what).click()
                else:
                    page.keyboard.press(what)
                sync_api.expect(page.locator("#count")).to_have_text(f"{n} / 5 rated")
                if n == 1:  # a mis-click withdrawn with U: the same pair comes back, same sides
                    page.keyboard.press("u")
                    sync_api.expect(page.locator("#count")).to_have_text("0 / 5 rated")
                    assert shown(page) == (prompt, left, right)
                    page.get_by_role("button", name=what).click()
                    sync_api.expect(page.locator("#count")).to_have_text("1 / 5 rated")
                expected[prompt] = (choice, left, right, reason)
            page.wait_for_selector("#done:not([hidden])")
            assert page.inner_text("#count") == "5 / 5 rated"

            bob = browser.new_page()  # a second rater at the same time
            bob.goto(f"{url}?rater=bob")
            bob.wait_for_selector("#task:not([hidden])")
            before = shown(bob)
            assert main(["rate", "serve", "--db", str(db), "--port", str(free_port())]) == 2  # a second server
            assert f"is already served by gemmaforge rate serve (pid {server.pid} " in capsys.readouterr().err
            server.kill()  # a crash, then a restart: bob comes back to the same pair, same sides
            server.wait()
            server = start_server(db, port)
            bob.reload()
            bob.wait_for_selector("#task:not([hidden])")
            assert shown(bob) == before
            bob.keyboard.press("1")
            sync_api.expect(bob.locator("#count")).to_have_text("1 / 5 rated")
            browser.close()
    finally:
        server.kill()
        server.wait()
    assert dialogs == []

    rows = RatingStore(db).ratings()
    alice = [r for r in rows if r["rater"] == "alice"]
    assert len(alice) == 5 and [r["rater"] for r in rows].count("bob") == 1
    for r in alice:
        choice, left, right, reason = expected[r["prompt"]]
        a_left = r["shown_first"] == "a"
        assert (r["text_a"].strip(), r["text_b"].strip()) != ("", "")
        assert (left if a_left else right).split()[0] in r["text_a"]  # the side shown maps to the pair's a
        want = {"left": "a" if a_left else "b", "right": "b" if a_left else "a"}.get(choice, choice)
        assert r["verdict"] == want and r["reason"] == reason and r["source"] == "human"
    assert (ROOT / "test-artifacts" / "rate-page.png").stat().st_size > 10_000
