"""The one JSON Lines reader: records with line numbers, and errors that name file and line."""

import gzip

import pytest

from gemmaforge.data.errors import DataError
from gemmaforge.errors import InputError
from gemmaforge.util.jsonl import read_jsonl


def test_reads_plain_and_gzip_skipping_blank_lines(tmp_path):
    text = '{"a": 1}\n\n  \n{"a": "é"}\n'
    (tmp_path / "x.jsonl").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "x.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    for name in ("x.jsonl", "x.jsonl.gz"):
        assert list(read_jsonl(tmp_path / name)) == [(1, {"a": 1}), (4, {"a": "é"})]


@pytest.mark.parametrize("content, message", [
    (b'{"a": 1}\n{"a": oops}\n', r"x.jsonl:2: not valid JSON \(Expecting value, column 7\)"),
    (b'{"a": 1}\n[1, 2]\n', r"x.jsonl:2: expected a JSON object, got list"),
    (b'{"a": "\xff"}\n', r"x.jsonl: not UTF-8 text after line 0"),
])
def test_bad_lines_raise_the_callers_error_with_file_and_line(tmp_path, content, message):
    (tmp_path / "x.jsonl").write_bytes(content)
    with pytest.raises(DataError, match=message):
        list(read_jsonl(tmp_path / "x.jsonl", DataError))


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match=r"missing.jsonl: cannot read: No such file"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    whole = gzip.compress(b'{"a": 1}\n' * 1000)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match=r"cut.jsonl.gz: cannot read"):
        list(read_jsonl(tmp_path / "cut.jsonl.gz"))
