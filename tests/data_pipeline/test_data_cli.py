"""The `gemmaforge data` verbs, driven through the argparse wiring the main CLI will use."""

import argparse
import json

import pytest

from gemmaforge.data import DataError, add_data_arguments, data_main


def _parse(argv):
    parser = argparse.ArgumentParser(prog="gemmaforge data")
    add_data_arguments(parser)
    return parser.parse_args(argv)


def test_prepare_from_config_with_overrides(tmp_path, monkeypatch, byte_tokenizer, code_files, capsys):
    (tmp_path / "c.json").write_text(json.dumps({
        "output": "ignored", "tokenizer": "bytes", "seq_len": 32, "progress": True,
        "sources": [{"name": "code", "kind": "code", "paths": [str(p) for p in code_files[:3]]}]}))
    monkeypatch.setattr("gemmaforge.data.pipeline.load_tokenizer", lambda source: byte_tokenizer)
    args = _parse(["prepare", "--config", str(tmp_path / "c.json"), "--output", str(tmp_path / "out"),
                   "--workers", "1", "--no-progress"])
    assert data_main(args) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "out") in out and "kept 3 of 3 documents" in out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["progress"] is False


def test_prepare_needs_exactly_one_config_source(tmp_path):
    with pytest.raises(DataError, match="either --config FILE or --default"):
        data_main(_parse(["prepare"]))
    with pytest.raises(DataError, match="--output and --tokenizer"):
        data_main(_parse(["prepare", "--default", "--output", str(tmp_path)]))


def test_setup_and_train_quality(tmp_path, prose, code_files, capsys):
    code = code_files[0].read_text().split("\n\n")
    with open(tmp_path / "ex.jsonl", "w") as f:
        f.writelines(json.dumps({"text": t, "label": 1}) + "\n" for t in prose[:40])
        f.writelines(json.dumps({"text": t, "label": 0}) + "\n" for t in code[:40])
    assert data_main(_parse(["train-quality", "--examples", str(tmp_path / "ex.jsonl"),
                             "--output", str(tmp_path / "q.npz"), "--buckets", "4096"])) == 0
    assert (tmp_path / "q.npz").exists() and "training accuracy" in capsys.readouterr().out
    code_ = data_main(_parse(["setup"]))
    out = capsys.readouterr().out
    assert "stdlib" in out and code_ == (0 if "MISSING" not in out else 1)
