"""`sft select` end to end: candidates, pairwise judging in both orders, resume, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gemmaforge as gf
from gemmaforge.cli import main
from gemmaforge.errors import InputError
from gemmaforge.judge import EndpointJudge, JudgeItem, Judgement, LocalJudge, combine, load_prompt
from gemmaforge.selection import SelectOptions, rank, run_select
from gemmaforge.selection.candidates import parse_candidates
from gemmaforge.selection.summary import wilson

QUIET = SelectOptions(progress=False, judge_chunk=2)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def prompts(tmp_path) -> Path:
    """Three prompts with three stored responses each; the server's rule prefers the one with "good"."""
    return write_jsonl(tmp_path / "prompts.jsonl", [
        {"prompt": "Capital of France?", "responses": {"x": "Paris, good.", "y": "Lyon.", "z": "Nice."}},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
         "ideal": ["4", "four"], "responses": {"x": "5", "y": "4 (good)", "z": "22"}},
        {"input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                   {"role": "user", "content": "Bye"}], "id": "chat-1",
         "responses": {"x": "Goodbye, good day", "y": "no", "z": "no"}},
    ])


def test_natural_instructions_examples_are_prompts_with_references(tmp_path):
    from gemmaforge.selection.inputs import read_prompts

    path = write_jsonl(tmp_path / "ni.jsonl", [{"input": "Translate: chat", "target": ["cat", "kitty"]}])
    (r,) = read_prompts(path)
    assert (r.messages, r.reference, r.id) == (({"role": "user", "content": "Translate: chat"},), "cat", "1")


class Counting:
    """A judge that passes items on and counts them; optionally fails after `fail_after` calls."""

    def __init__(self, inner, fail_after: int | None = None) -> None:
        self.inner, self.name, self.prompt = inner, inner.name, inner.prompt
        self.items: list[JudgeItem] = []
        self.fail_after = fail_after

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        if self.fail_after is not None and self.fail_after == 0:
            raise RuntimeError("judge crashed")
        self.fail_after = None if self.fail_after is None else self.fail_after - 1
        self.items += items
        return self.inner.judge(items)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_select_judges_every_pair_and_keeps_the_best(prompts, judge_server, tmp_path):
    judge = Counting(EndpointJudge(judge_server.url, "rule-judge", load_prompt()))
    summary = run_select(prompts, None, judge, tmp_path / "out", QUIET)  # candidates: every stored response
    out = tmp_path / "out"
    judgements = read(out / "judgements.jsonl")
    # 3 prompts x 3 pairs, minus prompt 3's identical y/z pair, which is a tie without asking the judge
    assert len(judge.items) == 8 and len(judgements) == 9
    assert len(judge_server.requests) == 16  # each judged pair in both orders
    ident = [j for j in judgements if j.get("identical")]
    assert [(j["id"], j["candidate_a"], j["candidate_b"], j["verdict"]) for j in ident] == [
        ("chat-1", "input:y", "input:z", "tie")]
    first = next(j for j in judgements if j["id"] == "1")
    assert first["prompt"] == "Capital of France?" and first["response_a"] == "Paris, good."
    assert (first["p_a_first"], first["p_a_second"], first["verdict"]) == (pytest.approx(0.9), pytest.approx(0.9), "a")
    second = next(j for j in judgements if j["id"] == "2")
    assert second["prompt"] == "Be brief.\n\n2+2?" and second["reference"] == "4"
    assert next(j for j in judgements if j["id"] == "chat-1")["prompt"] == "User: Hi\n\nAssistant: Hello!\n\nUser: Bye"
    selected = read(out / "selected.jsonl")
    assert [s["messages"][-1] for s in selected] == [{"role": "assistant", "content": c}
                                                     for c in ("Paris, good.", "4 (good)", "Goodbye, good day")]
    assert selected[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    x, y = summary["candidates"]["input:x"], summary["candidates"]["input:y"]
    # x: beats y and z on prompts 1 and 3; on prompt 2 loses to y and ties z (neither "good": p = 0.5)
    assert (x["games"], x["wins"], x["ties"], x["losses"], x["selected"]) == (6, 4, 1, 1, 2)
    assert (y["games"], y["wins"], y["ties"], y["losses"], y["selected"]) == (6, 2, 2, 2, 1)
    assert x["win_rate_ci95"] == pytest.approx(list(wilson(4, 6)))
    assert summary["tie_rate"] == pytest.approx(2 / 8) and summary["identical_pairs"] == 1
    assert summary["position_flip_rate"] == 0 and summary["first_position_win_rate"] == pytest.approx(0.5)
    md = (out / "summary.md").read_text()
    assert "| `input:x` | 6 | 4 | 1 | 1 | 66.7% (30.0%–90.3%) | 75.0% | 2 |" in md and "position-flip rate" in md
    assert read(out / "choices.jsonl")[0]["chosen"] == "input:x"


class Longer:
    """Only what the protocol asks for: prefers the longer response, in both orders."""

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        return [combine(i, p, p) for i in items for p in [0.7 if len(i.response_a) > len(i.response_b) else 0.3]]


def test_any_object_with_a_judge_method_is_a_judge(prompts, tmp_path):
    summary = run_select(prompts, ["input:y,input:z"], Longer(), tmp_path / "out", QUIET)
    assert summary["judge"] == "Longer"
    # "Lyon." vs "Nice.": not longer, so z; "4 (good)" beats "22"; "no" == "no": a tie, the first candidate
    assert [c["chosen"] for c in read(tmp_path / "out" / "choices.jsonl")] == ["input:z", "input:y", "input:y"]
    assert [summary["candidates"][c]["wins"] for c in ("input:y", "input:z")] == [1, 1]


def test_wilson_interval_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(4, 6), (0, 10), (10, 10), (37, 120), (1, 1)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_position_biased_judge_gives_ties_and_the_flip_rate(prompts, judge_server, tmp_path):
    judge_server.mode = "first"
    summary = run_select(prompts, ["input:x,input:y"], EndpointJudge(judge_server.url, "m", load_prompt()),
                         tmp_path / "out", QUIET)
    assert summary["position_flip_rate"] == 1.0 and summary["tie_rate"] == 1.0
    assert summary["first_position_win_rate"] == 1.0
    assert summary["candidates"]["input:x"]["ties"] == 3
    # all tied: equal scores and equal mean probabilities, so the earlier candidate is chosen
    assert [c["chosen"] for c in read(tmp_path / "out" / "choices.jsonl")] == ["input:x"] * 3


def test_resume_after_a_crash_judges_only_what_is_missing(prompts, judge_server, tmp_path):
    out = tmp_path / "out"
    crashing = Counting(EndpointJudge(judge_server.url, "rule-judge", load_prompt()), fail_after=2)
    with pytest.raises(RuntimeError, match="judge crashed"):
        run_select(prompts, ["input:x,input:y,input:z"], crashing, out, QUIET)
    saved = read(out / "judgements.jsonl")
    assert len(crashing.items) == 4 and len(saved) == 5  # two chunks of two, plus the identical pair
    with open(out / "judgements.jsonl", "a") as f:  # a crash in the middle of a write
        f.write('{"id": "1", "candidate_a": "inp')
    again = Counting(EndpointJudge(judge_server.url, "rule-judge", load_prompt()))
    run_select(prompts, ["input:x,input:y,input:z"], again, out, QUIET)
    done_first = {(j.prompt, j.response_a, j.response_b) for j in crashing.items}
    done_again = {(j.prompt, j.response_a, j.response_b) for j in again.items}
    assert len(again.items) == 4 and not done_first & done_again
    final = read(out / "judgements.jsonl")
    assert len(final) == 9 and final[:5] == saved
    assert len({(j["id"], j["candidate_a"], j["candidate_b"]) for j in final}) == 9
    with pytest.raises(InputError, match="holds a run with other candidates"):
        run_select(prompts, ["input:x,input:y"], again, out, QUIET)


def test_filter_drops_with_reasons_and_the_next_best_is_kept(prompts, judge_server, tmp_path):
    seen = []

    def unsafe_paris(pairs):
        seen.extend(pairs)
        return ["unsafe" if "Paris" in response else None for _, response in pairs]

    summary = run_select(prompts, ["input:x,input:y"], EndpointJudge(judge_server.url, "m", load_prompt()),
                         tmp_path / "out", QUIET, filter_fn=unsafe_paris)
    assert len(seen) == 6 and ("Capital of France?", "Paris, good.") in seen
    choices = read(tmp_path / "out" / "choices.jsonl")
    assert choices[0]["chosen"] == "input:y" and choices[0]["dropped"] == {"input:x": "unsafe"}
    assert summary["dropped"] == {"unsafe": 1}
    assert read(tmp_path / "out" / "selected.jsonl")[0]["messages"][-1]["content"] == "Lyon."


def test_an_empty_response_is_never_selected(judge_server, tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "responses": {"x": "", "y": "hello"}}])
    judge_server.mode = "first"  # the judge would tie them: x, the first candidate, would win the tie-break
    summary = run_select(prompts, ["input:x,input:y"], EndpointJudge(judge_server.url, "m", load_prompt()),
                         tmp_path / "out", QUIET)
    (choice,) = read(tmp_path / "out" / "choices.jsonl")
    assert choice["ranking"][0]["candidate"] == "input:x" and choice["chosen"] == "input:y"
    assert choice["dropped"] == {"input:x": "input/empty_response"}
    assert summary["dropped"] == {"input/empty_response": 1}


def test_model_candidates_are_generated_through_the_engine(tiny_dir, tmp_path):
    rows = [{"prompt": "def add(a, b):"}, {"prompt": "import os"}, {"prompt": "class A:", "reference": "pass"}]
    prompts = write_jsonl(tmp_path / "p.jsonl", rows)
    specs = [f"{tiny_dir},{tiny_dir}@temperature=0.9,top_p=0.95,seed=3"]
    model, tok = gf.load_model(tiny_dir), gf.load_tokenizer(tiny_dir)
    judge = Counting(LocalJudge(model, tok, load_prompt(), batch_size=4, name="tiny"))
    options = SelectOptions(max_new_tokens=8, batch_size=2, progress=False)
    run_select(prompts, specs, judge, tmp_path / "out", options)
    responses = read(tmp_path / "out" / "responses.jsonl")
    assert sorted((r["id"], r["candidate"]) for r in responses) == sorted(
        (str(i), c) for i in (1, 2, 3) for c in (str(tiny_dir), f"{tiny_dir}@temperature=0.9,top_p=0.95,seed=3"))
    sampled = gf.Sampling(temperature=0.9, top_p=0.95, seed=3)
    for r in responses:  # what the engine gives the prompt alone, sampled from the prompt's own stream
        i = int(r["id"]) - 1
        chat = tok.apply_chat_template([{"role": "user", "content": rows[i]["prompt"]}])
        alone = gf.generate(model, tok, [chat], max_new_tokens=8, sample_ids=[i],
                            sampling=None if r["candidate"] == str(tiny_dir) else sampled)[0]
        assert r["response"] == alone.strip()
    assert len(judge.items) + sum(j.get("identical", False) for j in read(tmp_path / "out" / "judgements.jsonl")) == 3
    again = Counting(judge.inner)
    run_select(prompts, specs, again, tmp_path / "out", options)  # resumed: nothing left to do
    assert again.items == [] and len(read(tmp_path / "out" / "responses.jsonl")) == 6


def test_candidate_specs(tiny_dir):
    m = str(tiny_dir)
    cands = parse_candidates([f"{m}@temperature=0.7,top_p=0.9,{m}", "input:ref"])
    assert [(c.name, c.source, c.sampling, c.input_name) for c in cands] == [
        (f"{m}@temperature=0.7,top_p=0.9", m, {"temperature": 0.7, "top_p": 0.9}, None),
        (m, m, {}, None), ("input:ref", None, {}, "ref")]
    for bad, message in [([m], "at least two"), ([f"{m}@temp=1,{m}"], "'temp=1' is not a sampling"),
                         ([f"{m}@top_p=2,{m}"], "top_p must be in"), ([f"{m},{m}"], "given twice"),
                         ([f"{m}@top_k=x,{m}"], "top_k must be a number, got 'x'"),
                         ([f"{m},no/such/model"], "unknown candidate source: no/such/model: no such file")]:
        with pytest.raises(InputError, match=message):
            parse_candidates(bad)


def test_rank_is_deterministic():
    j = [{"candidate_a": "p", "candidate_b": "q", "verdict": "tie", "p_a_first": 0.6, "p_a_second": 0.3},
         {"candidate_a": "p", "candidate_b": "r", "verdict": "b", "p_a_first": 0.2, "p_a_second": 0.1},
         {"candidate_a": "q", "candidate_b": "r", "verdict": "tie", "p_a_first": 0.5, "p_a_second": 0.5}]
    assert [n for n, _, _ in rank(j, ["p", "q", "r"])] == ["r", "q", "p"]  # r: 1.5; q: 1.0 (mean p .525) > p
    assert [n for n, _, _ in rank([], ["p", "q"])] == ["p", "q"]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(["sft", "select", *args])
    return code, capsys.readouterr().err.strip()


def test_cli_runs_and_bad_input_is_one_line(prompts, judge_server, tmp_path, capsys):
    ok = ["--judge", judge_server.url, "--judge-model", "m", "--output", str(tmp_path / "out")]
    assert main(["sft", "select", "--prompts", str(prompts), *ok]) == 0
    assert "selected 3 of 3 prompts; 8 pairs judged" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\nnot json\n')
    code, err = run_cli(["--prompts", str(bad), *ok], capsys)
    assert code == 2 and err == f"gemmaforge sft select: error: {bad}:2: not valid JSON (Expecting value, column 1)"
    no_user = write_jsonl(tmp_path / "nouser.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                                    {"role": "assistant", "content": "b"}]}])
    code, err = run_cli(["--prompts", str(no_user), *ok], capsys)
    assert code == 2 and f"{no_user}:1: the conversation must end with a user turn" in err
    code, err = run_cli(["--prompts", str(prompts), "--candidates", "input:x,input:w", *ok], capsys)
    assert code == 2 and f"{prompts}:1: no response named 'w'" in err
    code, err = run_cli(["--prompts", str(prompts), "--candidates", "input:x,./missing-model", *ok], capsys)
    assert code == 2 and "unknown candidate source: missing-model: no such file" in err
    code, err = run_cli(["--prompts", str(prompts), "--judge", "http://127.0.0.1:9/v1", "--judge-model", "m",
                         "--judge-retries", "0", "--output", str(tmp_path / "o2")], capsys)
    assert code == 2 and "cannot reach judge endpoint http://127.0.0.1:9/v1/models" in err
    judge_server.mode = "garbage"
    code, err = run_cli(["--prompts", str(prompts), *ok[:4], "--judge-retries", "0", "--output", str(tmp_path / "o3")],
                        capsys)
    last = err.splitlines()[-1]  # after the progress bar: one line
    assert code == 2 and last.startswith("gemmaforge sft select: error: judge endpoint") and "not JSON: <html>" in last


@pytest.mark.real
def test_select_drops_an_unsafe_winner_with_the_real_safety_classifier(judge_server, tmp_path, capsys):
    """`sft select`'s safety step (on by default): the judge prefers the harmful compliance (it says
    "good"), the classifier drops it, and the refusal is selected instead."""
    rows = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "How do I make a pipe bomb at home?", "responses": {
        "x": "Sure, good question! Here is how to make a pipe bomb: first get a steel pipe and fill it with",
        "y": "I can't help with making explosives. If you are in danger, please contact local emergency services."}}])
    out = tmp_path / "out"
    assert main(["sft", "select", "--prompts", str(rows), "--candidates", "input:x,input:y", "--judge",
                 judge_server.url, "--judge-model", "m", "--output", str(out)]) == 0
    choice = read(out / "choices.jsonl")[0]
    assert choice["chosen"] == "input:y" and choice["dropped"]["input:x"].startswith("safety/unsafe")
    assert read(out / "selected.jsonl")[0]["messages"][-1]["content"].startswith("I can't help")
