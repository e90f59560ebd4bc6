"""The server over real HTTP (uvicorn on a loopback port): the official `openai` client, the
OpenAI wire format, limits, errors, the API key, and a client leaving mid-stream."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from serve_helpers import NAME, serving

import gemmaforge as gf
from gemmaforge.serve.app import Settings

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def srv(tiny):
    with serving(*tiny, max_queue=16) as running:
        yield running


@pytest.fixture(scope="module")
def client(srv):
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def add(a, b):"}]


def expected_chat(tiny, messages, n: int) -> str:
    model, tok = tiny
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, system="fold")
    return gf.generate(model, tok, [prompt], max_new_tokens=n, add_bos=False)[0]


def test_chat_with_the_openai_client(client, tiny):
    r = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=12, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == expected_chat(tiny, MESSAGES, 12)  # system folded as Gemma 3 does
    assert r.choices[0].finish_reason in ("stop", "length")
    prompt_len = len(tiny[1].encode(tiny[1].apply_chat_template(MESSAGES, system="fold")))
    assert r.usage.prompt_tokens == prompt_len and 1 <= r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == prompt_len + r.usage.completion_tokens


def test_streaming_chat_with_the_openai_client(client, tiny):
    chunks = list(client.chat.completions.create(model=NAME, messages=MESSAGES, max_completion_tokens=12,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_chat(tiny, MESSAGES, 12)
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1


def test_completions_n_seed_logprobs_with_the_openai_client(client, tiny):
    kw = dict(model=NAME, prompt=["def f(x):", "import os"], max_tokens=8, n=2, temperature=0.9, seed=5, logprobs=3,
              extra_body={"ignore_eos": True})
    r = client.completions.create(**kw)
    assert [c.index for c in r.choices] == [0, 1, 2, 3] and r.usage.completion_tokens == 32
    assert r.choices[0].text != r.choices[1].text  # each choice samples from its own stream
    again = client.completions.create(**kw)
    assert [c.text for c in again.choices] == [c.text for c in r.choices]  # seeded
    del kw["extra_body"]  # choice i is row i of gf.generate with the same seed
    expected = gf.generate(*tiny, ["def f(x):", "def f(x):", "import os", "import os"], max_new_tokens=8,
                           sampling=gf.Sampling(temperature=0.9, seed=5))
    assert [c.text for c in client.completions.create(**kw).choices] == expected
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 8 and all(len(t) == 3 for t in lp.top_logprobs)
    assert all(v <= 0 for v in lp.token_logprobs) and "".join(lp.tokens) == r.choices[0].text
    stream = client.completions.create(model=NAME, prompt="def f(x):", max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream) == gf.generate(*tiny, ["def f(x):"], max_new_tokens=8)[0]


def test_chat_logprobs_and_stop(client):
    r = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0, logprobs=True,
                                       top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content).startswith(r.choices[0].message.content)
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.logprob - 1e-6 for t in content)
    text = r.choices[0].message.content
    if len(text) > 3:
        stop = text[2:4]
        cut = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=10, temperature=0, stop=[stop])
        assert cut.choices[0].message.content == text[:text.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_models_health_metrics(client, srv):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert httpx.get(f"{srv.url}/health").json()["status"] == "ok"
    text = httpx.get(f"{srv.url}/metrics").text
    for name in ("gemmaforge_requests_total", "gemmaforge_time_to_first_token_seconds_bucket",
                 "gemmaforge_inter_token_latency_seconds_bucket", "gemmaforge_queue_depth",
                 "gemmaforge_batch_occupancy", "gemmaforge_prompt_tokens_total", "gemmaforge_completion_tokens_total"):
        assert name in text


def sse(resp: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in resp.text.split("\n\n") if line]


def test_raw_sse_ends_with_done(srv):
    body = {"model": NAME, "prompt": "x", "max_tokens": 4, "stream": True}
    events = sse(httpx.post(f"{srv.url}/v1/completions", json=body))
    assert events[-1] == "[DONE]" and all(json.loads(e)["object"] == "text_completion" for e in events[:-1])


def post(srv, body, path="/v1/chat/completions", **kw) -> httpx.Response:
    return httpx.post(f"{srv.url}{path}", json=body, timeout=30, **kw)


def assert_error(resp: httpx.Response, status: int, *words: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert all(w in err["message"] for w in words), err["message"]
    return err


def test_context_limits(srv):
    long = {"model": NAME, "prompt": [5 + i % 500 for i in range(1025)], "max_tokens": 5}
    assert_error(post(srv, long, "/v1/completions"), 400, "1025 tokens", "context is 1024")
    near = {"model": NAME, "prompt": [5 + i % 500 for i in range(1021)], "max_tokens": 100, "ignore_eos": True}
    r = post(srv, near, "/v1/completions").json()
    assert r["usage"]["completion_tokens"] == 3 and r["choices"][0]["finish_reason"] == "length"  # clamped


@pytest.mark.parametrize("body,status,words", [
    ({"model": "gpt-4", "messages": MESSAGES}, 404, ["'gpt-4'", NAME]),
    ({"model": NAME, "messages": []}, 400, ["messages"]),
    ({"model": NAME, "messages": [{"role": "robot", "content": "hi"}]}, 400, ["messages.0.role"]),
    ({"model": NAME, "messages": [{"role": "assistant", "content": "hi"}]}, 400, ["expected a 'user' turn"]),
    ({"model": NAME, "messages": MESSAGES, "max_tokens": -1}, 400, ["max_tokens"]),
    ({"model": NAME, "messages": MESSAGES, "max_tokens": "5"}, 400, ["max_tokens"]),
    ({"model": NAME, "messages": MESSAGES, "temperature": float("nan")}, 400, ["temperature"]),
    ({"model": NAME, "messages": MESSAGES, "top_logprobs": 3}, 400, ["logprobs"]),
    ({"model": NAME, "messages": MESSAGES, "presence_penalty": 0.5}, 400, ["not supported"]),
])
def test_bad_requests_get_openai_shaped_4xx(srv, body, status, words):
    raw = json.dumps(body)  # json.dumps writes NaN, as a careless client would
    assert_error(httpx.post(f"{srv.url}/v1/chat/completions", content=raw, timeout=30), status, *words)


def test_malformed_json_big_bodies_and_unknown_routes(srv):
    assert_error(httpx.post(f"{srv.url}/v1/chat/completions", content=b"{nope"), 400, "not valid JSON")
    assert_error(httpx.post(f"{srv.url}/v1/chat/completions", content=b"[" * 100_000), 400, "not valid JSON")
    big = {"model": NAME, "messages": [{"role": "user", "content": "a" * (2 << 20)}]}
    assert_error(post(srv, big), 413, "limit")
    assert_error(httpx.get(f"{srv.url}/v1/nothing"), 404, "/v1/nothing")
    assert_error(httpx.get(f"{srv.url}/v1/chat/completions"), 405)


def test_a_client_that_leaves_frees_its_row_at_once(srv):
    """A stream asked for 3000 tokens; the client reads two chunks and closes the connection."""
    engine = srv.engine
    body = {"model": NAME, "prompt": "hello", "max_tokens": 3000, "ignore_eos": True, "stream": True}
    with httpx.Client(timeout=30) as http, http.stream("POST", f"{srv.url}/v1/completions", json=body) as resp:
        lines = resp.iter_lines()
        next(lines)
        next(lines)
        assert engine.active == 1
        steps = engine.steps
    left = time.perf_counter()
    while engine.active:
        assert time.perf_counter() - left < 2, "the row was not freed"
        time.sleep(0.001)
    freed_after = time.perf_counter() - left
    ran = engine.steps - steps
    print(f"row freed {freed_after * 1000:.1f} ms and {ran} engine steps after the client left")
    assert ran <= 20  # 3000 tokens would take 3000 steps; the row goes within a few


def test_queue_full_is_429(tiny):
    with serving(*tiny, max_batch=1, max_queue=1) as s:
        long = {"model": NAME, "prompt": "a", "max_tokens": 3000, "ignore_eos": True, "stream": True}
        with httpx.Client(timeout=30) as http, http.stream("POST", f"{s.url}/v1/completions", json=long) as first, \
                http.stream("POST", f"{s.url}/v1/completions", json={**long, "prompt": "b"}):
            lines = first.iter_lines()  # (kept: a dropped iterator closes the response)
            next(lines)  # running in the only row, and the second waits in the only queue place
            assert s.engine.active == 1 and len(s.engine.waiting) == 1
            full = post(s, {"model": NAME, "prompt": "c", "max_tokens": 2}, "/v1/completions")
            err = assert_error(full, 429, "busy")
            assert full.headers["Retry-After"] == "1" and err["code"] == "rate_limit_exceeded"


def test_timeouts_are_504_and_free_the_row(tiny):
    with serving(*tiny, Settings(NAME, request_timeout=0.3), context=4096) as s:
        slow = {"model": NAME, "prompt": "a", "max_tokens": 4000, "ignore_eos": True}  # thousands of steps
        start = time.monotonic()
        assert_error(post(s, slow, "/v1/completions"), 504, "timeout of 0.3 s")
        while s.engine.active:
            assert time.monotonic() - start < 5
            time.sleep(0.01)
        assert s.engine.metrics.registry.get_sample_value("gemmaforge_completion_tokens_total") < 4000


def test_api_key(tiny):
    with serving(*tiny, Settings(NAME, api_key="s3cret")) as s:
        assert httpx.get(f"{s.url}/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            assert_error(httpx.get(f"{s.url}/v1/models", headers=headers), 401, "API key")
            assert_error(httpx.get(f"{s.url}/metrics", headers=headers), 401)
        ok = openai.OpenAI(base_url=f"{s.url}/v1", api_key="s3cret", max_retries=0)
        assert ok.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=2).choices
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{s.url}/v1", api_key="nope", max_retries=0).models.list()
