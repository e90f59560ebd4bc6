"""The command line, end to end on a tiny model with its own trained tokenizer."""

import io
import json
import sysconfig
from pathlib import Path

import pytest
from model_helpers import random_gemma

import gemmaforge as gf
from gemmaforge.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny Gemma 3 saved with a tokenizer trained on some of the standard library."""
    d = tmp_path_factory.mktemp("tiny")
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]
    tok = gf.train_tokenizer(files, 600, d / "tok")
    model = random_gemma("tiny-gemma3", std=0.1)
    model = gf.Gemma(model.config.replace(vocab_size=600))
    gf.save_model(model, d / "model")
    tok.save(d / "model")
    return d / "model"


def test_info_json(model_dir, capsys):
    assert main(["info", str(model_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["vocab_size"] == 600 and report["parameters"] > 0


def test_generate_streams_text(model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "def f(x):", "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_chat_with_piped_input(model_dir, capsys, monkeypatch):
    seen = []  # (message, turns of history when it was sent)
    send = gf.ChatSession.send

    def spy(self, text):
        seen.append((text, len(self.messages)))
        return send(self, text)

    monkeypatch.setattr(gf.ChatSession, "send", spy)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nthere\n/reset\nagain\n/exit\nnever read\n"))
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "4"]) == 0
    assert "(history cleared)" in capsys.readouterr().err
    assert seen == [("hello", 0), ("there", 2), ("again", 0)]


def test_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "missing"), "hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemmaforge generate: error: ") and "missing: no such file" in err
    assert "Traceback" not in err


def test_convert_to_hf(model_dir, tmp_path, capsys):
    assert main(["convert", str(model_dir), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "gemma3_text"


def test_chat_survives_ctrl_c_and_errors_in_a_reply(model_dir, capsys, monkeypatch):
    send = gf.ChatSession.send
    calls = []

    def flaky(self, text):
        calls.append(text)
        if text == "interrupt":
            raise KeyboardInterrupt
        if text == "fail":
            raise gf.InputError("prompt 0 is too long")
        return send(self, text)

    monkeypatch.setattr(gf.ChatSession, "send", flaky)
    monkeypatch.setattr("sys.stdin", io.StringIO("interrupt\nfail\nhello\n"))
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert "(reply interrupted; this exchange is not kept in the history)" in err
    assert "error: prompt 0 is too long" in err and calls == ["interrupt", "fail", "hello"]


def test_generate_strips_the_newline_that_piping_adds(model_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("def f(x):\n"))
    assert main(["generate", "--model", str(model_dir), "--max-new-tokens", "6"]) == 0
    tok, model = gf.load_tokenizer(model_dir), gf.load_model(model_dir)
    assert capsys.readouterr().out == gf.generate(model, tok, ["def f(x):"], 6)[0] + "\n"
    assert gf.generate(model, tok, ["def f(x):\n"], 6) != gf.generate(model, tok, ["def f(x):"], 6)  # it matters


def test_bad_generation_settings_are_one_line_before_the_model_loads(tmp_path, capsys):
    missing = tmp_path / "no-model"  # a bad option is reported before the model is even looked for
    assert main(["generate", "--model", str(missing), "hi", "--temperature", "nan"]) == 2
    assert capsys.readouterr().err == ("gemmaforge generate: error: argument --temperature: expected a number >= 0, "
                                       "got 'nan' (see gemmaforge generate --help)\n")


def test_convert_refuses_a_non_empty_output_without_force(model_dir, tmp_path, capsys):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("my thesis")
    assert main(["convert", str(model_dir), str(tmp_path / "precious")]) == 2
    err = capsys.readouterr().err
    assert err == f"gemmaforge convert: error: {tmp_path / 'precious'}: directory is not empty; " \
                  "pass overwrite=True (--force) to replace it\n"
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "my thesis"
    assert main(["convert", str(model_dir), str(tmp_path / "precious"), "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_convert_to_an_unwritable_place_is_one_line(model_dir, capsys):
    assert main(["convert", str(model_dir), "/proc/gemmaforge-test"]) == 2
    assert capsys.readouterr().err.startswith("gemmaforge convert: error: /proc/gemmaforge-test: cannot write here")


@pytest.mark.parametrize("to", ["gemmaforge", "hf"])
def test_converted_directory_generates(model_dir, tmp_path, capsys, to):
    assert main(["convert", str(model_dir), str(tmp_path / "out"), "--to", to]) == 0
    assert "and tokenizer" in capsys.readouterr().out
    assert gf.load_tokenizer(tmp_path / "out").serialized_model_proto() == \
        gf.load_tokenizer(model_dir).serialized_model_proto()
    assert main(["generate", "--model", str(tmp_path / "out"), "Hi", "--max-new-tokens", "3"]) == 0


def test_convert_without_a_tokenizer_says_so(tmp_path, capsys):
    gf.save_model(random_gemma("tiny-gemma3"), tmp_path / "weights")
    assert main(["convert", str(tmp_path / "weights"), str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gemmaforge convert: no tokenizer written: ")
    assert not (tmp_path / "out" / "tokenizer.model").exists()


def test_dtype_choices_are_the_supported_ones(capsys):
    from gemmaforge.cli import DTYPES
    from gemmaforge.model import SUPPORTED_DTYPES

    assert DTYPES == tuple(str(d).removeprefix("torch.") for d in SUPPORTED_DTYPES)
    assert main(["info", "gemma3-270m", "--dtype", "float16"]) == 2
    assert "invalid choice: 'float16' (choose from 'float32', 'bfloat16')" in capsys.readouterr().err


@pytest.mark.oracle
def test_hf_export_tokenizer_loads_in_transformers(model_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = gf.load_tokenizer(model_dir)
    gf.export_hf(gf.load_model(model_dir), tmp_path / "hf", tokenizer=tok)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "<start_of_turn>user\ndef f(x):\n  return 1"
    assert theirs(text)["input_ids"] == tok.encode(text)


def test_chat_help_and_unknown_commands(model_dir, capsys, monkeypatch):
    seen = []
    send = gf.ChatSession.send
    monkeypatch.setattr(gf.ChatSession, "send", lambda self, text: seen.append(text) or send(self, text))
    monkeypatch.setattr("sys.stdin", io.StringIO("/help\n/rest\n//etc/hosts is a file\nhi\n"))
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    assert "/reset   forget the conversation so far" in err
    assert "unknown command /rest; /help lists the commands" in err
    assert seen == ["/etc/hosts is a file", "hi"]  # only real messages reach the model


def test_chat_refuses_bad_settings_before_loading(tmp_path, capsys):
    assert main(["chat", "--model", str(tmp_path / "none"), "--max-new-tokens", "-1"]) == 2
    assert "argument --max-new-tokens: must be an integer >= 0, got '-1'" in capsys.readouterr().err


def test_generate_batches_several_prompts_and_labels_each(model_dir, capsys):
    prompts = ["def f(x):", "import os", "class A:"]
    assert main(["generate", "--model", str(model_dir), "--max-new-tokens", "5", *prompts]) == 0
    out = capsys.readouterr().out
    tok, model = gf.load_tokenizer(model_dir), gf.load_model(model_dir)
    expected = gf.generate(model, tok, prompts, 5)
    assert out == "".join(f"=== [{i}/3] {p}\n{t}\n" for i, (p, t) in enumerate(zip(prompts, expected), 1))


def test_tokenizer_flag_overrides_where_the_tokenizer_comes_from(model_dir, tmp_path, capsys):
    bare = tmp_path / "bare"
    gf.save_model(gf.load_model(model_dir), bare)  # weights only: no tokenizer.model
    assert main(["generate", "--model", str(bare), "--max-new-tokens", "2", "x"]) == 2
    assert "tokenizer.model: no such file" in capsys.readouterr().err
    assert main(["generate", "--model", str(bare), "--tokenizer", str(model_dir), "--max-new-tokens", "2", "x"]) == 0


def test_speculative_generate_and_chat_give_the_plain_text_and_report_acceptance(model_dir, capsys, monkeypatch):
    prompt = "def f(x):\n    return x + x + x + x"
    assert main(["generate", "--model", str(model_dir), prompt, "--max-new-tokens", "12"]) == 0
    plain = capsys.readouterr().out
    assert main(["generate", "--model", str(model_dir), prompt, "--max-new-tokens", "12", "--threads", "1",
                 "--speculative", "prompt-lookup", "--draft-tokens", "4", "--max-ngram", "2"]) == 0
    out = capsys.readouterr()
    assert out.out == plain and "prompt lookup:" in out.err and "drafted tokens accepted" in out.err
    replies = []
    for extra in ([], ["--speculative", "prompt-lookup"]):
        monkeypatch.setattr("sys.stdin", io.StringIO("abab abab\nagain abab\n"))
        assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "6", *extra]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1]


@pytest.mark.parametrize("argv, message", [
    (["hi", "--draft-tokens", "4"], "--draft-tokens, --max-ngram and --min-ngram need --speculative prompt-lookup"),
    (["hi", "--speculative", "prompt-lookup", "--min-ngram", "3", "--max-ngram", "2"], "min_ngram <= max_ngram"),
    (["hi", "ho", "--speculative", "prompt-lookup"], "--speculative decodes one prompt at a time, got 2"),
])
def test_bad_speculative_options_are_one_line_before_the_model_loads(tmp_path, capsys, argv, message):
    assert main(["generate", "--model", str(tmp_path / "no-model"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
