"""`gemmaforge sft` end to end on a tiny Gemma with a small Gemma 3-style tokenizer: LoRA learns,
checkpoints hold only the adapters, a stopped run resumes to the same loss curve, and the merged
export is an ordinary model that computes what the adapted one did."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from sft_helpers import VOCAB, arithmetic_chats, small_tokenizer, tiny_model, write_jsonl
from train_helpers import to_toml

import gemmaforge as gf
from gemmaforge.cli import main as cli_main
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.metrics import read_rows
from gemmaforge.train.sft import sft
from gemmaforge.train.trained import load_trained


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny Gemma saved with the real tokenizer: what `init_from` names."""
    tok = small_tokenizer(tmp_path_factory.mktemp("tok"))
    return gf.save_model(tiny_model(), tmp_path_factory.mktemp("base") / "tiny", tokenizer=tok)


def table(tmp_path, base, name: str, steps: int, **sections) -> dict:
    train = write_jsonl(tmp_path / "train.jsonl", arithmetic_chats(24))
    val = write_jsonl(tmp_path / "val.jsonl", arithmetic_chats(6, seed=1))
    t = {"out_dir": str(tmp_path / name), "model": {"init_from": str(base)},
         "data": {"train": str(train), "val": str(val), "seq_len": 64},
         "lora": {"targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                  "rank": 4, "alpha": 8.0, "dropout": 0.1},
         "optim": {"lr": 1e-2, "warmup_steps": 0, "min_lr_ratio": 1.0, "weight_decay": 0.0},
         "train": {"max_steps": steps, "global_batch": 4, "micro_batch": 2},
         "eval": {"interval": 3}, "checkpoint": {"interval": 3, "keep": 1},
         "log": {"progress": False, "peak_tflops": 0.1}}
    for k, v in sections.items():
        t[k] = {**t.get(k, {}), **v}
    return t


def test_lora_sft_learns_resumes_and_exports(tmp_path, base):
    whole = sft(TrainConfig.from_dict(table(tmp_path, base, "whole", 6)))
    rows = read_rows(tmp_path / "whole" / "metrics.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.5
    assert rows[-1]["val_loss"] < [r for r in rows if "val_loss" in r][0]["val_loss"]
    assert whole["trainable_parameters"] == 9728 < whole["parameters"] / 10  # rank 4 on 7 kinds x 2 layers

    first = table(tmp_path, base, "stopped", 3)
    sft(TrainConfig.from_dict(first))
    first["train"]["max_steps"] = 6
    resumed = sft(TrainConfig.from_dict(first), resume=True)
    assert resumed["resumed_from"] == 3
    got = read_rows(tmp_path / "stopped" / "metrics.jsonl")
    assert [r["loss"] for r in got] == [r["loss"] for r in rows]  # dropout's RNG restored too

    ckpt = tmp_path / "whole" / "checkpoints" / "step-00000006"
    assert all(".lora_" in k for k in load_file(ckpt / "model.safetensors"))
    assert json.loads((ckpt / "module.json").read_text())["base"]["source"] == str(base)
    adapted = load_trained(ckpt)
    merged = gf.load_model(whole["model"])  # an ordinary checkpoint, with the tokenizer
    assert gf.load_tokenizer(whole["model"]).vocab_size == VOCAB
    ids = torch.tensor([gf.load_tokenizer(base).encode("What is 2 plus 3?")])
    with torch.no_grad():
        assert (merged(ids) - adapted(ids)).abs().max() < 1e-4
        assert (merged(ids) - gf.load_model(base)(ids)).abs().max() > 1e-2


def test_the_cli_verb_runs_and_reports_bad_input_in_one_line(tmp_path, base, capsys):
    t = table(tmp_path, base, "cli", 1, lora={"targets": ["qkv"]})
    (tmp_path / "bad.toml").write_text(to_toml(t))
    assert cli_main(["sft", "--config", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gemmaforge") and "lora.targets: 'qkv' names no Linear module" in err
    assert len(err.splitlines()) == 1

    t = table(tmp_path, base, "cli", 1, data={"train": str(write_jsonl(tmp_path / "b.jsonl", ["{oops"]))})
    (tmp_path / "bad2.toml").write_text(to_toml(t))
    assert cli_main(["sft", "--config", str(tmp_path / "bad2.toml")]) == 2
    assert "b.jsonl:1: not JSON Lines" in capsys.readouterr().err

    t = table(tmp_path, base, "full", 2, lora={"targets": []}, checkpoint={"export_hf": True})
    (tmp_path / "full.toml").write_text(to_toml(t))
    assert cli_main(["sft", "--config", str(tmp_path / "full.toml"), "--threads", "1"]) == 0
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["trainable_parameters"] == summary["parameters"]  # full fine-tuning
    assert (tmp_path / "full" / "model-hf" / "config.json").exists()
