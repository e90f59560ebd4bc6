"""Hundreds of generated malformed requests: each is answered 4xx in OpenAI's shape (or, when a
mutation happens to be valid, 200), never 500; afterwards the engine still serves a valid request."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from serve_helpers import NAME, serving

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)

CHAT = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": NAME, "prompt": "hi", "max_tokens": 2}
FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "n",
          "stop", "seed", "stream", "stream_options", "logprobs", "top_logprobs", "ignore_eos", "echo", "best_of"]
ROLES = st.sampled_from(["user", "assistant", "system", "developer", "model", "tool", "", "USER", None, 3])


@st.composite
def bodies(draw) -> tuple[str, bytes]:
    path = draw(st.sampled_from(["/v1/chat/completions", "/v1/completions"]))
    base = dict(CHAT if path.endswith("chat/completions") else COMPLETION)
    kind = draw(st.sampled_from(["bytes", "json", "field", "messages", "numbers"]))
    if kind == "bytes":
        return path, draw(st.binary(max_size=64))
    if kind == "json":
        return path, json.dumps(draw(JSON)).encode()
    if kind == "field":  # one field replaced by anything
        base[draw(st.sampled_from(FIELDS))] = draw(JSON)
    elif kind == "messages":  # conversations with bad roles, shapes and orders
        msg = st.fixed_dictionaries({"role": ROLES, "content": st.text(max_size=10) | JSON})
        base["messages"] = draw(st.lists(msg, max_size=4) | JSON)
    else:  # out-of-range or non-finite numbers
        name = draw(st.sampled_from(["max_tokens", "temperature", "top_p", "n", "top_logprobs", "logprobs", "seed"]))
        base[name] = draw(st.sampled_from([-1, 0, -0.5, 3.0, 1e308, 2**64, float("nan"), float("inf"), -2**70]))
    return path, json.dumps(base).encode()


@pytest.fixture(scope="module")
def srv(tiny):
    with serving(*tiny, max_queue=64) as running:
        yield running


def test_malformed_requests_never_hurt_the_server(srv):
    statuses: list[int] = []
    http = httpx.Client(base_url=srv.url, timeout=30)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(bodies())
    def one(case):
        path, body = case
        r = http.post(path, content=body, headers={"Content-Type": "application/json"})
        statuses.append(r.status_code)
        assert r.status_code < 500, (body, r.text)
        if r.status_code >= 400:
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and err["message"]

    one()
    rejected = sum(400 <= s < 500 for s in statuses)
    print(f"{len(statuses)} generated requests: {rejected} rejected with 4xx, {statuses.count(200)} valid")
    assert rejected >= 200
    metrics = http.get("/metrics").text  # the server counted each one under its status
    counted = sum(float(m.group(1)) for m in re.finditer(
        r'gemmaforge_requests_total\{endpoint="/v1/(?:chat/)?completions",status="4\d\d"\} (\S+)', metrics))
    assert counted == rejected
    r = http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    assert srv.engine.active == 0 and not srv.engine.waiting  # nothing left behind
    http.close()
