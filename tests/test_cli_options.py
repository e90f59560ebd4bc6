"""Every option of every verb: numeric ones are validated before any work (one line, exit 2),
writers refuse to replace output without --force, chat's /commands, Ctrl-C at start-up."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

from gemmaforge.cli import build_parser, main
from gemmaforge.util.argtypes import Number


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for sub in subs:
        for name, child in sub.choices.items():
            yield from leaf_parsers(child, path + (name,))


OPTIONS = [(path, action) for path, parser in leaf_parsers(build_parser()) for action in parser._actions
           if action.option_strings and action.type is not None and action.choices is None]


def test_there_are_options_to_sweep():
    verbs = {path[0] for path, _ in OPTIONS}
    assert {"generate", "chat", "tokenizer", "data", "eval", "pretrain"} <= verbs


@pytest.mark.parametrize("path, action", OPTIONS, ids=[f"{' '.join(p)} {a.option_strings[-1]}" for p, a in OPTIONS])
def test_numeric_options_declare_a_range_and_refuse_values_outside_it(path, action, capsys):
    name = f"{' '.join(path)} {action.option_strings[-1]}"
    assert action.type not in (int, float), f"{name}: plain {action.type.__name__}; declare a range (argtypes.Number)"
    if not isinstance(action.type, Number):
        return  # paths, choices, strings
    flag = action.option_strings[-1]
    for bad in action.type.bad_values():
        assert main([*path, f"{flag}={bad}"]) == 2, f"{flag}={bad} accepted"
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and flag in err and "Traceback" not in err, err


def test_help_shows_defaults(capsys):
    assert main(["generate", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--max-new-tokens N most tokens generated per reply (default: 64)" in out
    assert "(default: gemma3-270m)" in out and "0 = greedy (default: 0.0)" in out


def test_tokenizer_train_refuses_to_replace_a_tokenizer_without_force(tmp_path, capsys):
    (tmp_path / "tokenizer.model").write_bytes(b"precious")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text\n" * 50)
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--output", str(tmp_path)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "tokenizer.model").read_bytes() == b"precious"


def test_data_train_quality_refuses_to_replace_output_without_force(tmp_path, capsys):
    out = tmp_path / "q.npz"
    out.write_bytes(b"precious")
    assert main(["data", "train-quality", "--examples", str(tmp_path / "x.jsonl"), "--output", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"precious"


@pytest.fixture(scope="module")
def cli_import_seconds() -> float:
    """How long this machine takes to start Python and import the CLI module: the one window
    (interpreter start-up) that no program can guard, so signals are sent after it."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gemmaforge.cli"], check=True)
    return time.perf_counter() - start


@pytest.mark.parametrize("after", [0.0, 1.0, 3.0])
def test_ctrl_c_during_start_up_is_quiet(after, cli_import_seconds, tmp_path):
    """SIGINT while the CLI imports torch, builds its parser or loads the model: exit 130, no traceback."""
    proc = subprocess.Popen([sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, "
                             "signal.default_int_handler); from gemmaforge.cli import main; sys.exit(main())",
                             "generate", "--model", "gemma3-270m", "--max-new-tokens", "200", "hello"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GEMMAFORGE_CACHE": str(tmp_path)})  # slow load: stays in start-up
    time.sleep(1.5 * cli_import_seconds + after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
