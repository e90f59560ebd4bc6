"""Decontamination n-grams and the `gemmaforge eval` argument/run pair."""

from __future__ import annotations

import argparse
import json

import pytest

from gemmaforge.eval import EvalConfigError, EvalDataError, add_eval_arguments, eval_main, get_task
from gemmaforge.eval.decontam import (
    contaminated_items,
    export_ngrams,
    find_contamination,
    ngrams,
    read_ngrams,
    words,
    write_ngrams,
)


def test_normalisation_lowercases_and_splits_on_punctuation():
    assert words("Janet’s ducks—lay 16 eggs_per day!") == ["janet", "s", "ducks", "lay", "16", "eggs", "per", "day"]
    assert words("ＦＵＬＬ width") == ["full", "width"]  # NFKC


def test_ngrams_and_short_fields():
    text = " ".join(f"w{i}" for i in range(15))
    assert ngrams(text, n=13) == {" ".join(f"w{i}" for i in range(s, s + 13)) for s in range(3)}
    assert ngrams("one two three four five six seven eight", n=13) == {"one two three four five six seven eight"}
    assert ngrams("too short", n=13) == set()


def test_planted_items_are_found_in_a_corpus(tmp_path):
    task = get_task("gsm8k")
    index = export_ngrams([task])
    assert len(index) == 1319 and all(index.values())
    items = task.load()
    planted = items[7].doc["question"]
    corpus = ["unrelated text about cooking " * 20,
              f"Forum post. {planted.upper()} Thanks!",  # case and punctuation do not hide it
              "another clean document"]
    hits = find_contamination(corpus, index)
    assert hits == [(1, f"gsm8k/{items[7].id}")]
    path = write_ngrams(index, tmp_path / "gsm8k.ngrams.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"item", "n", "ngrams"} and first["n"] == 13
    assert contaminated_items(corpus, read_ngrams(path)) == {f"gsm8k/{items[7].id}": [1]}


def _parse(argv):
    parser = argparse.ArgumentParser(prog="gemmaforge eval")
    add_eval_arguments(parser)
    return parser.parse_args(argv)


def test_cli_arguments_reach_the_run(monkeypatch, tmp_path, scripted_lm, capsys):
    """The real run_eval behind the CLI, with a scripted model in place of loading weights: every
    option lands in the model's settings or in the results' config."""
    loaded = {}

    def load(source, **kwargs):
        loaded.update(source=source, **kwargs)
        return scripted_lm()

    monkeypatch.setattr("gemmaforge.eval.gemma_lm.GemmaLM.load", load)
    out = tmp_path / "out"
    args = _parse(["--model", "m.gguf", "--tasks", "mmlu, gsm8k", "--limit", "5", "--num-fewshot", "2",
                   "--batch-size", "3", "--samples", "4", "--temperature", "0.8", "--code-timeout", "3",
                   "--seed", "7", "--max-length", "99", "--chat", "--dtype", "bfloat16", "--quantize", "int4",
                   "--group-size", "64", "--mix", "q4_k_m", "--output", str(out)])
    assert eval_main(args) == 0
    assert loaded == {"source": "m.gguf", "batch_size": 3, "chat": True, "max_length": 99, "dtype": "bfloat16",
                      "quantize": "int4", "group_size": 64, "mix": "q4_k_m"}
    data = json.loads((out / "results.json").read_text())
    config = data["config"]
    assert config["tasks"] == ["mmlu", "gsm8k"] and data["provenance"]["model"] == "m.gguf"
    assert (config["limit"], config["shots"], config["batch_size"], config["samples"]) == (5, 2, 3, 4)
    assert (config["temperature"], config["seed"], config["sandbox"]["timeout_s"]) == (0.8, 7, 3.0)
    assert (config["quantize"], config["group_size"], config["mix"]) == ("int4", 64, "q4_k_m")
    assert [t["shots"] for t in data["tasks"]] == [2, 2] and "maj@4" in data["tasks"][1]["metrics"]
    assert "| mmlu | **acc_macro** |" in capsys.readouterr().out


def test_cli_decontamination_without_a_model(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    question = get_task("humaneval").load()[0].doc["prompt"]
    corpus.write_text(json.dumps({"text": "intro " + question}) + "\n" + json.dumps({"text": "clean"}) + "\n")
    out = tmp_path / "he.jsonl"
    assert eval_main(_parse(["--tasks", "humaneval", "--export-ngrams", str(out),
                             "--check-corpus", str(corpus)])) == 0
    assert len(out.read_text().splitlines()) == 164
    assert "HumanEval/0\t1 document(s)" in capsys.readouterr().out


def test_cli_requires_tasks():
    with pytest.raises(SystemExit):
        _parse(["--model", "x"])


def test_cli_export_refuses_two_tasks_of_the_same_name(tmp_path):
    for d in "ab":
        (tmp_path / d).mkdir()
        (tmp_path / d / "mine.jsonl").write_text(json.dumps({"type": "generate", "prompt": "Q", "answer": d}) + "\n")
    out = tmp_path / "n.jsonl"
    with pytest.raises(EvalConfigError, match="both named 'mine'"):
        eval_main(_parse(["--tasks", f"{tmp_path}/a/mine.jsonl,{tmp_path}/b/mine.jsonl", "--export-ngrams", str(out)]))
    assert not out.exists()


def test_cli_check_corpus_names_missing_files_before_any_work(tmp_path, monkeypatch):
    def export(*args, **kwargs):
        raise AssertionError("no n-grams before the corpus is checked")

    monkeypatch.setattr("gemmaforge.eval.cli.export_ngrams", export)
    real = tmp_path / "real.txt"
    real.write_text("text")
    with pytest.raises(EvalDataError, match=f"^--check-corpus: no such file: nope.txt, {tmp_path}$"):
        eval_main(_parse(["--tasks", "gsm8k", "--check-corpus", str(real), "nope.txt", str(tmp_path)]))
