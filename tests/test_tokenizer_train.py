"""Training a Gemma-style tokenizer on real text, and its command line."""

from __future__ import annotations

import os
import stat
import sysconfig
from pathlib import Path

import pytest

from gemmaforge.cli import main as cli_main
from gemmaforge.errors import InputError
from gemmaforge.tokenizer import load_tokenizer
from gemmaforge.tokenizer.train import special_pieces, train_tokenizer

UNSEEN = ["日本語のテキスト", "Ünïcödé ∑ ≠ ∞", "🧑‍💻👨‍👩‍👧‍👦", "\x00\x01\x7f", "Привет, мир", "नमस्ते",
          "  two  spaces,\ttabs\t\tand\n\nnewlines  ", "<start_of_turn>user\nhi<end_of_turn>", ""]


@pytest.fixture(scope="module")
def corpus() -> list[Path]:
    """About 400 KB of the CPython standard library."""
    files, total = [], 0
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        files.append(f)
        total += f.stat().st_size
        if total > 400_000:
            return files
    pytest.skip("the standard library sources are not installed")


def test_train_load_and_round_trip(corpus, tmp_path):
    tok = train_tokenizer(corpus, 1000, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.model"]  # no temporary left over
    loaded = load_tokenizer(tmp_path)
    assert loaded.vocab_size == 1000 and loaded.family == 3
    assert [loaded.id_to_piece(i) for i in range(6)] == ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    assert (loaded.start_of_turn_id, loaded.end_of_turn_id) == (105, 106)
    assert loaded.id_to_piece(6) == "<unused0>" and loaded.id_to_piece(104) == "<unused98>"
    text = corpus[0].read_text()
    assert loaded.encode(text) == tok.encode(text)
    assert len(tok.encode(text)) < len(text) / 1.6  # it learned merges, not just characters
    for s in UNSEEN + [text]:
        assert loaded.decode(loaded.encode(s, add_bos=False)) == s, s
    assert loaded.encode("日", add_bos=False) == [loaded.piece_to_id(f"<0x{b:02X}>") for b in "日".encode()]


def test_gemma_options(corpus, tmp_path):
    tok = train_tokenizer(corpus[:5], 600, tmp_path, num_reserved=3)
    assert tok.start_of_turn_id == 6 + 3  # after pad eos bos unk mask [multimodal], 3 unused
    assert tok.encode("x" + " " * 7 + "y", add_bos=False)[1] == tok.piece_to_id("\u2581" * 7)
    assert tok.encode("\n\n\n", add_bos=False) == [tok.piece_to_id("\n\n\n")]
    assert tok.encode("2024", add_bos=False) == [tok.piece_to_id(d) for d in "2024"]  # digits split
    assert tok.encode(" hi", add_bos=False)[0] != tok.encode("hi", add_bos=False)[0]  # no dummy prefix
    assert tok.decode(tok.encode("a   \n  b", add_bos=False)) == "a   \n  b"  # whitespace kept


def test_family_1_layout(corpus, tmp_path):
    tok = train_tokenizer(corpus[:5], 600, tmp_path, family=1)
    assert [tok.id_to_piece(i) for i in (4, 5, 6, 7)] == ["<mask>", "<2mass>", "[@BOS@]", "<unused0>"]
    assert (tok.start_of_turn_id, tok.end_of_turn_id) == (106, 107)
    assert special_pieces(1, 99)[102:104] == ["<start_of_turn>", "<end_of_turn>"]


def test_streams_strings_from_a_generator(corpus, tmp_path):
    consumed = []

    def documents():
        for f in corpus[:8]:
            consumed.append(f)
            yield f.read_text()

    tok = train_tokenizer(documents(), 600, tmp_path, input_sentence_size=2000)
    assert consumed == corpus[:8] and tok.vocab_size == 600


def test_errors(corpus, tmp_path):
    with pytest.raises(InputError, match="vocab_size 300 is too small"):
        train_tokenizer(corpus, 300, tmp_path)
    with pytest.raises(InputError, match="family must be 1, 2 or 3"):
        train_tokenizer(corpus, 1000, tmp_path, family=4)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ok line\n\xff\xfe not utf-8\n" * 100)
    with pytest.raises(InputError, match=f"{binary}: not UTF-8 text"):
        train_tokenizer([binary], 600, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    args = ["--input", *map(str, corpus[:5]), "--vocab-size", "600", "--output", str(out), "--reserved", "10"]
    assert cli_main(["tokenizer", "train", *args]) == 0
    assert f"wrote {out / 'tokenizer.model'}: 600 pieces" in capsys.readouterr().out
    assert load_tokenizer(out).start_of_turn_id == 6 + 10  # after pad eos bos unk mask [multimodal]
    assert cli_main(["tokenizer", "train", "--input", "/nonexistent.txt", "--vocab-size", "600",
                     "--output", str(out)]) == 2
    assert "error: no such input file: /nonexistent.txt" in capsys.readouterr().err
    assert cli_main(["tokenizer", "train", "--vocab-size", "600"]) == 2  # --input and --output missing
    assert "the following arguments are required: --input, --output" in capsys.readouterr().err


def test_deterministic_even_when_sampling_lines(corpus, tmp_path):
    a = train_tokenizer(corpus[:10], 600, tmp_path / "a", input_sentence_size=300)
    b = train_tokenizer(corpus[:10], 600, tmp_path / "b", input_sentence_size=300)
    assert a.serialized_model_proto() == b.serialized_model_proto()


def test_str_naming_a_file_is_read_and_path_like_str_naming_none_is_an_error(corpus, tmp_path):
    by_path = train_tokenizer(corpus[:3], 600, tmp_path / "a")
    by_str = train_tokenizer([str(f) for f in corpus[:3]], 600, tmp_path / "b")
    assert by_str.serialized_model_proto() == by_path.serialized_model_proto()
    for name in ("corpus.txt", "data/train"):
        with pytest.raises(InputError, match=f"no such input file: {name}$"):
            train_tokenizer([corpus[0].read_text(), name], 600, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_output_is_checked_before_training(corpus, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("trained although the output is unusable")

    monkeypatch.setattr("gemmaforge.tokenizer.train._train", never)
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(InputError, match=f"{tmp_path / 'afile'}: exists and is not a directory"):
        train_tokenizer(corpus[:1], 600, tmp_path / "afile")
    with pytest.raises(InputError, match="/proc/gemmaforge-t1: cannot create the output directory"):
        train_tokenizer(corpus[:1], 600, "/proc/gemmaforge-t1")
    assert (tmp_path / "afile").read_text() == "keep"


def test_cli_bad_arguments_are_one_line(corpus, tmp_path, capsys):
    def run(*extra: str) -> str:
        args = ["tokenizer", "train", "--vocab-size", "600", "--threads", "1", *extra]
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err

    good = ["--input", str(corpus[0])]
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "file").write_text("")
    assert "no text in the inputs" in run("--input", str(tmp_path / "empty.txt"), "--output", str(tmp_path / "o"))
    assert f"input is a directory, not a text file: {tmp_path}" in run("--input", str(tmp_path), "--output",
                                                                         str(tmp_path / "o"))
    assert "argument --reserved: must be an integer >= 0, got '-1'" in run(*good, "--output", str(tmp_path / "o"),
                                                                           "--reserved", "-1")
    assert f"{tmp_path / 'file'}: exists and is not a directory" in run(*good, "--output", str(tmp_path / "file"))
    assert "cannot create the output directory" in run(*good, "--output", "/proc/gemmaforge-t1")
    assert not (tmp_path / "o").exists()


def test_tokenizer_file_gets_the_usual_permissions(corpus, tmp_path):
    old = os.umask(0o022)
    try:
        train_tokenizer(corpus[:1], 600, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "tokenizer.model").stat().st_mode) == 0o644


def test_a_single_file_needs_no_list(corpus, tmp_path):
    listed = train_tokenizer([corpus[0]], 600, tmp_path / "a")
    assert train_tokenizer(corpus[0], 600, tmp_path / "b").serialized_model_proto() == listed.serialized_model_proto()
    assert train_tokenizer(str(corpus[0]), 600, tmp_path / "c").serialized_model_proto() == \
        listed.serialized_model_proto()
