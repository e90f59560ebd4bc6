"""`gemmaforge serve` as a process: SIGTERM drains running requests and exits 0; bad flags are one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import free_port

from gemmaforge.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def start(model_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "gemmaforge", "serve", "--model", str(model_dir), "--port", str(port),
           "--threads", "1", "--context", "2048", "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the server did not come up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)


def test_sigterm_lets_running_requests_finish_then_exits_0(tiny_dir):
    port = free_port()
    proc = start(tiny_dir, port, "--grace-period", "60", "--api-key", "k")
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer k"}
    events: list[str] = []
    first = threading.Event()

    def stream():
        body = {"model": "model", "prompt": "hello", "max_tokens": 1000, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, headers=headers, timeout=120) as r:
            for line in r.iter_lines():
                if line:
                    events.append(line.removeprefix("data: "))
                    first.set()

    client = threading.Thread(target=stream)
    client.start()
    assert first.wait(60)
    proc.send_signal(signal.SIGTERM)
    at_sigterm = len(events)
    time.sleep(0.5)
    with pytest.raises(httpx.TransportError):  # no longer accepting
        httpx.get(f"{url}/health", timeout=2)
    client.join(120)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert events[-1] == "[DONE]" and len(events) > at_sigterm + 10  # the running request finished in full
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "Traceback" not in err


def test_bad_flags_are_one_line(capsys):
    assert main(["serve", "--max-batch", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-batch" in err and "Traceback" not in err
