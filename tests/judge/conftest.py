"""Shared by the judge and selection tests: a tiny Gemma with a trained tokenizer saved like a real
checkpoint, and a real OpenAI-compatible HTTP server on loopback standing in for a user's judge."""

from __future__ import annotations

import json
import math
import re
import sysconfig
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import gemmaforge as gf


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random Gemma 3 (context 2048, enough for a judging prompt) with its tokenizer."""
    d = tmp_path_factory.mktemp("tiny_judge")
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]
    tok = gf.train_tokenizer(files, 600, d / "tok")
    torch.manual_seed(0)
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3").replace(vocab_size=600, max_seq_len=2048))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    gf.save_model(model, d / "model")
    tok.save(d / "model")
    return d / "model"


ANSWER = re.compile(r"\[Answer ([AB])\]\n(.*?)\n\[End of Answer \1\]", re.S)


class JudgeServer:
    """Chat completions answered by a fixed rule over the two answers in the prompt.

    mode "content": the answer containing `good` wins with probability 0.9, whatever its position;
    mode "first": the first-shown answer wins with probability 0.8 (a pure position bias);
    mode "text": like "content", but no log-probabilities, only the one-letter answer, and no /models;
    mode "no-logprobs": refuses the logprobs option with HTTP 400, then answers like "text";
    mode "deny": HTTP 401 to everything; mode "garbage": an HTML page; mode "shape": JSON that is not a chat completion;
    `fail_first`: this many requests get HTTP 503 before any is served.
    """

    def __init__(self) -> None:
        self.mode, self.good, self.fail_first = "content", "good", 0
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if server.mode == "deny":
                    return self._send(401, {"error": "invalid api key"})
                if server.mode == "text":  # a server without a model list
                    return self._send(404, {"error": "not found"})
                self._send(200, {"object": "list", "data": [{"id": "rule-judge"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                if server.fail_first > 0:
                    server.fail_first -= 1
                    return self._send(503, {"error": "warming up"})
                if server.mode == "garbage":
                    return self._send(200, "<html>Bad gateway</html>", raw=True)
                if server.mode == "shape":
                    return self._send(200, {"result": "A"})
                if server.mode == "no-logprobs" and body.get("logprobs"):
                    return self._send(400, {"error": {"message": "logprobs are not supported"}})
                self._send(200, server.answer(body))

            def _send(self, code: int, payload: object, raw: bool = False) -> None:
                data = (payload if raw else json.dumps(payload)).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def p_first_label(self, prompt: str) -> float:
        answers = dict(ANSWER.findall(prompt))
        if self.mode == "first":
            return 0.8
        return 0.9 if self.good in answers["A"] else 0.1 if self.good in answers["B"] else 0.5

    def answer(self, body: dict) -> dict:
        p = self.p_first_label(body["messages"][-1]["content"])
        letter = "A" if p >= 0.5 else "B"
        choice: dict = {"index": 0, "message": {"role": "assistant", "content": letter}, "finish_reason": "length"}
        if body.get("logprobs") and self.mode in ("content", "first"):
            top = [{"token": "A", "logprob": math.log(p * 0.7)}, {"token": " A", "logprob": math.log(p * 0.2)},
                   {"token": "B", "logprob": math.log((1 - p) * 0.9)}, {"token": "The", "logprob": math.log(0.1)}]
            choice["logprobs"] = {"content": [{"token": letter, "logprob": 0.0, "top_logprobs": top}]}
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}


@pytest.fixture
def judge_server() -> Iterator[JudgeServer]:
    server = JudgeServer()
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
