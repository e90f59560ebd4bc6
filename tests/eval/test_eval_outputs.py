"""What eval leaves in --output across runs (written per task, resumed, started over, no stale
logs), undefined standard errors, progress that moves, and every numeric option checked before
the model loads."""

from __future__ import annotations

import json
import math

import pytest
import torch

import gemmaforge
from gemmaforge.cli import main
from gemmaforge.eval import EvalConfigError, run_eval
from gemmaforge.eval.gemma_lm import GemmaLM
from gemmaforge.eval.lm import GenerateRequest, LoglikRequest


class Interrupted(Exception):
    """Stands in for Ctrl-C or a crash in the middle of a task."""


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_a_run_cut_off_in_its_second_task_keeps_the_first(scripted_lm, tmp_path):
    class Crashing(scripted_lm):
        def loglikelihood(self, requests):
            if self.loglik_calls:
                raise Interrupted
            return super().loglikelihood(requests)

    with pytest.raises(Interrupted):
        run_eval(Crashing(), ["piqa", "boolq"], limit=3, output_dir=str(tmp_path))
    data = _results(tmp_path)
    assert [t["task"] for t in data["tasks"]] == ["piqa"] and data["tasks"][0]["n"] == 3
    assert "| piqa |" in (tmp_path / "results.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md", "samples_piqa.jsonl"]


def test_a_second_run_resumes_and_says_so(scripted_lm, tmp_path, caplog):
    first = run_eval(scripted_lm(), ["piqa"], limit=3, output_dir=str(tmp_path))
    (tmp_path / "samples_boolq.jsonl").write_text("half a line from a run that was cut off")
    lm = scripted_lm()
    res = run_eval(lm, ["piqa", "boolq"], limit=3, output_dir=str(tmp_path), batch_size=2)
    assert lm.loglik_calls == [6]  # boolq only (3 items x no/yes)
    assert "piqa: finished by an earlier run" in caplog.text and "--overwrite" in caplog.text
    assert res["piqa"].metrics["acc"].value == first["piqa"].metrics["acc"].value
    data = _results(tmp_path)
    assert [t["task"] for t in data["tasks"]] == ["piqa", "boolq"]
    assert data["config"]["tasks"] == ["piqa", "boolq"]
    log = (tmp_path / "samples_boolq.jsonl").read_text().splitlines()
    assert len(log) == 3 and all(json.loads(line)["task"] == "boolq" for line in log)


def test_other_settings_or_model_refuse_to_mix_until_overwrite(scripted_lm, tmp_path):
    run_eval(scripted_lm(), ["piqa", "boolq"], limit=3, output_dir=str(tmp_path))
    lm = scripted_lm()
    with pytest.raises(EvalConfigError, match=r"other settings \(limit\); pass --overwrite"):
        run_eval(lm, ["piqa"], limit=4, output_dir=str(tmp_path))

    class Other(scripted_lm):
        name = "another-model"

    with pytest.raises(EvalConfigError, match=r"other settings \(model\)"):
        run_eval(Other(), ["piqa"], limit=3, output_dir=str(tmp_path))
    assert lm.loglik_calls == [] and (tmp_path / "samples_boolq.jsonl").exists()
    run_eval(lm, ["piqa"], limit=4, output_dir=str(tmp_path), overwrite=True)
    assert lm.loglik_calls == [8]
    assert [t["task"] for t in _results(tmp_path)["tasks"]] == ["piqa"]
    assert not (tmp_path / "samples_boolq.jsonl").exists()  # the old run's log went with its results


def test_logs_of_older_runs_never_sit_beside_new_results(scripted_lm, tmp_path):
    (tmp_path / "samples_hellaswag.jsonl").write_text("{}\n")
    (tmp_path / "samples_piqa.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("mine")
    run_eval(scripted_lm(), ["piqa"], limit=2, output_dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "results.json", "results.md",
                                                           "samples_piqa.jsonl"]
    assert len((tmp_path / "samples_piqa.jsonl").read_text().splitlines()) == 2


def test_a_corrupt_results_file_is_an_error_not_a_traceback(scripted_lm, tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(EvalConfigError, match="is not a gemmaforge results file"):
        run_eval(scripted_lm(), ["piqa"], limit=2, output_dir=str(tmp_path))


def test_macro_stderr_with_single_item_subjects_is_undefined(scripted_lm, tmp_path):
    res = run_eval(scripted_lm(), ["mmlu"], limit=10, output_dir=str(tmp_path))
    groups = res["mmlu"].groups
    assert any(g["acc"].n == 1 for g in groups.values())
    assert math.isnan(res["mmlu"].metrics["acc_macro"].stderr)
    assert not math.isnan(res["mmlu"].metrics["acc"].stderr)  # the micro average has one
    metrics = _results(tmp_path)["tasks"][0]["metrics"]
    assert metrics["acc_macro"]["stderr"] is None and metrics["acc"]["stderr"] > 0
    md = (tmp_path / "results.md").read_text()
    assert "| mmlu | **acc_macro** |" in md and "n/a" in md.split("**acc_macro**")[1].splitlines()[0]
    assert "0.0000 |" not in md.split("**acc_macro**")[1].splitlines()[0]


class Bar:
    """Records what a progress bar is told."""

    made: list[Bar] = []

    def __init__(self, total, **kwargs):
        self.total, self.updates = total, []
        Bar.made.append(self)

    def update(self, n=1):
        self.updates.append(n)

    def close(self):
        pass


@pytest.fixture
def bars(monkeypatch):
    Bar.made = []
    monkeypatch.setattr("gemmaforge.eval.gemma_lm.tqdm", Bar)
    return Bar.made


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = gemmaforge.Gemma(gemmaforge.GemmaConfig.preset("tiny-gemma3"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def test_loglikelihood_progress_counts_requests(tiny_model, char_tokenizer, bars):
    reqs = [LoglikRequest(f"question {i}?", f" {c}") for i in range(5) for c in "AB"]
    GemmaLM(tiny_model, char_tokenizer, batch_size=4).loglikelihood(reqs)
    (bar,) = bars
    assert bar.total == 10 and sum(bar.updates) == 10 and len(bar.updates) > 1


def test_generation_progress_moves_inside_one_batch(tiny_model, char_tokenizer, bars):
    """Five prompts in one batch (HumanEval --limit 5): a row that stops early ticks the bar at once."""
    prompts = [f"def f{i}():" for i in range(5)]
    first = gemmaforge.generate(tiny_model, char_tokenizer, prompts[:1], 1)[0]
    reqs = [GenerateRequest(p, 12, (first,)) for p in prompts]
    out = GemmaLM(tiny_model, char_tokenizer, batch_size=8).generate(reqs)
    assert [o[0] for o in out] == gemmaforge.generate(tiny_model, char_tokenizer, prompts, 12, stop=[first])
    (bar,) = bars
    assert bar.total == 5 and sum(bar.updates) == 5
    assert bar.updates[0] < 5  # not one tick at the end of the batch


NUMERIC = {  # option -> (the word its error names, values that are valid: they reach the model load)
    "--limit": ("limit", ()), "--shots": ("shots", ("0",)), "--num-fewshot": ("shots", ("0",)),
    "--batch-size": ("batch", ()), "--samples": ("samples", ()), "--max-length": ("max", ()),
    "--threads": ("threads", ()), "--code-timeout": ("timeout", ()), "--temperature": ("temperature", ("0",)),
    "--seed": ("seed", ("0", "-1")), "--ngram": ("ngram", ()),
}


class Loaded(Exception):
    """The model was about to load: every check before it passed."""


@pytest.mark.parametrize("option", NUMERIC)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "abc", "1.5e400"])
def test_every_numeric_option_is_checked_before_the_model_loads(option, value, monkeypatch, capsys, tmp_path):
    def load(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(GemmaLM, "load", load)
    extra = ["--export-ngrams", str(tmp_path / "n.jsonl")] if option == "--ngram" else []
    argv = ["eval", "--tasks", "piqa", f"{option}={value}", *extra]
    word, valid = NUMERIC[option]
    if value in valid:
        with pytest.raises(Loaded):
            main(argv)
        return
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gemmaforge eval: error: "), err
    assert word in err, err
    assert not (tmp_path / "n.jsonl").exists()


def _exit_code(argv: list[str]) -> int:
    """What the shell would see: argparse exits, the CLI's error handler returns."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_code_timeout_zero_no_longer_runs_humaneval_to_a_silent_zero(monkeypatch, capsys):
    monkeypatch.setattr(GemmaLM, "load", lambda *a, **k: pytest.fail("the model must not load"))
    assert _exit_code(["eval", "--tasks", "humaneval", "--code-timeout", "0"]) == 2
    assert "argument --code-timeout: must be a number > 0, got '0'" in capsys.readouterr().err


def test_export_ngrams_creates_folders_and_keeps_an_existing_file(tmp_path, capsys):
    task = tmp_path / "mine.jsonl"
    task.write_text(json.dumps({"type": "multiple_choice", "question": "one two three four five six seven eight",
                                "choices": ["x", "y"], "answer": 0}) + "\n")
    out = tmp_path / "deep" / "er" / "ngrams.jsonl"
    assert main(["eval", "--tasks", str(task), "--export-ngrams", str(out), "--ngram", "3"]) == 0
    first = out.read_text()
    assert "one two three" in json.loads(first)["ngrams"]
    assert main(["eval", "--tasks", str(task), "--export-ngrams", str(out), "--ngram", "4"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == first
    assert main(["eval", "--tasks", str(task), "--export-ngrams", str(out), "--ngram", "4", "--overwrite"]) == 0
    assert json.loads(out.read_text())["n"] == 4
