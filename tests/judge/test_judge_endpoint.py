"""The endpoint judge against a real HTTP server on loopback speaking the chat-completions shape."""

from __future__ import annotations

import socket

import pytest

from gemmaforge.judge import EndpointJudge, JudgeError, JudgeItem, load_judge, load_prompt

ITEMS = [JudgeItem("Capital of France?", "It is a good question: Paris.", "Lyon."),
         JudgeItem("Capital of Italy?", "Milan.", "Rome is the good answer."),
         JudgeItem("2+2?", "4, the good one", "5", reference="4")]


def endpoint(server, **kw) -> EndpointJudge:
    return EndpointJudge(server.url, "rule-judge", load_prompt(), backoff_s=0.01, **kw)


def test_probabilities_from_top_logprobs_in_both_orders(judge_server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sekrit")
    judge = load_judge(judge_server.url, model_name="rule-judge", api_key_env="JUDGE_KEY")
    out = judge.judge(ITEMS)
    # "A" and " A" are one label; the server gives the better answer 0.9 wherever it stands
    assert [(round(j.p_a_first, 9), round(j.p_a_second, 9), j.verdict) for j in out] == [
        (0.9, 0.9, "a"), (0.1, 0.1, "b"), (0.9, 0.9, "a")]
    assert [j.mass_first for j in out] == pytest.approx([0.9, 0.9, 0.9])
    assert len(judge_server.requests) == 2 * len(ITEMS)  # both orders of every pair
    body = judge_server.requests[0]
    assert body["model"] == "rule-judge" and body["max_tokens"] == 1 and body["logprobs"] is True
    assert all(h["Authorization"] == "Bearer sekrit" for h in judge_server.headers)
    prompts = {r["messages"][0]["content"] for r in judge_server.requests}
    assert sum("[Reference answer]\n4\n" in p for p in prompts) == 2  # reference-guided, both orders


def test_position_bias_becomes_ties(judge_server):
    judge_server.mode = "first"
    out = endpoint(judge_server).judge(ITEMS)
    assert all(j.verdict == "tie" and j.flipped for j in out)
    assert all(j.p_a_first == pytest.approx(0.8) and j.p_a_second == pytest.approx(0.2) for j in out)


def test_text_answers_when_the_server_gives_no_logprobs(judge_server):
    judge_server.mode = "text"
    out = load_judge(judge_server.url, model_name="m").judge(ITEMS)  # no /models: still fine
    assert [(j.p_a_first, j.p_a_second, j.verdict, j.raw_first) for j in out] == [
        (1.0, 1.0, "a", "A"), (0.0, 0.0, "b", "B"), (1.0, 1.0, "a", "A")]


def test_a_server_that_refuses_logprobs_is_asked_for_text(judge_server):
    judge_server.mode = "no-logprobs"
    judge = endpoint(judge_server)
    assert [j.verdict for j in judge.judge(ITEMS)] == ["a", "b", "a"]
    assert not judge.use_logprobs and "logprobs" not in judge_server.requests[-1]


def test_transient_errors_are_retried(judge_server):
    judge_server.fail_first = 3
    assert [j.verdict for j in endpoint(judge_server, retries=3, workers=1).judge(ITEMS[:1])] == ["a"]
    judge_server.fail_first = 5
    with pytest.raises(JudgeError, match="answered HTTP 503"):
        endpoint(judge_server, retries=2, workers=1).judge(ITEMS[:1])


@pytest.mark.parametrize("mode,message", [("garbage", "not JSON: <html>Bad gateway</html>"),
                                          ("shape", "not answer in the chat-completions shape")])
def test_garbage_is_one_clear_error(judge_server, mode, message):
    judge_server.mode = mode
    with pytest.raises(JudgeError, match=message):
        endpoint(judge_server).judge(ITEMS[:1])


def test_an_endpoint_that_is_down_fails_at_load():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(JudgeError, match=f"cannot reach judge endpoint {url}/models after 1 tries"):
        load_judge(f"http://127.0.0.1:{port}/v1", model_name="m", retries=0)
    with pytest.raises(JudgeError, match="--judge-model"):
        load_judge(f"http://127.0.0.1:{port}/v1")


def test_a_refused_key_fails_at_load(judge_server):
    judge_server.mode = "deny"
    with pytest.raises(JudgeError, match="HTTP 401 \\(unauthorized: check the API key variable\\)"):
        load_judge(judge_server.url, model_name="rule-judge", retries=0)
