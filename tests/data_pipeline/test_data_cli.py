"""The `gemmaforge data` verbs, driven through the argparse wiring the main CLI will use."""

import argparse
import json

import pytest

from gemmaforge.data import DataError, PackedDataset, add_data_arguments, data_main
from gemmaforge.errors import GemmaForgeError


def _parse(argv):
    parser = argparse.ArgumentParser(prog="gemmaforge data")
    add_data_arguments(parser)
    return parser.parse_args(argv)


def test_prepare_from_config_with_overrides(tmp_path, gemma_tokenizer_dir, code_files, capsys):
    """The tokenizer comes from gemmaforge.load_tokenizer, here a directory that train_tokenizer wrote."""
    (tmp_path / "c.json").write_text(json.dumps({
        "output": "ignored", "tokenizer": str(gemma_tokenizer_dir), "seq_len": 32, "progress": True,
        "sources": [{"name": "code", "kind": "code", "paths": [str(p) for p in code_files[:3]]}]}))
    args = _parse(["prepare", "--config", str(tmp_path / "c.json"), "--output", str(tmp_path / "out"),
                   "--workers", "2", "--no-progress"])
    assert data_main(args) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "out") in out and "kept 3 of 3 documents" in out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["progress"] is False and manifest["tokenizer"]["vocab_size"] == 600
    assert PackedDataset(tmp_path / "out")[0][0] == manifest["tokenizer"]["bos_id"] == 2

    args = _parse(["prepare", "--config", str(tmp_path / "c.json"), "--output", str(tmp_path / "out2"),
                   "--tokenizer", str(tmp_path / "missing.model")])
    with pytest.raises(GemmaForgeError, match="missing.model"):
        data_main(args)
    assert not (tmp_path / "out2").exists()


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
