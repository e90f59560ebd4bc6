"""TrainConfig from TOML: defaults, overrides, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import write_config

import gemmaforge as gf
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.errors import TrainError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_loads_toml_with_model_overrides(tmp_path):
    cfg = TrainConfig.load(write_config(tmp_path, model={"preset": "tiny-gemma2", "vocab_size": 1000},
                                        optim={"lr": 1}))
    assert cfg.model.gemma_config().vocab_size == 1000
    assert cfg.model.gemma_config().family == 2
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.train.micro_batch == 4 and cfg.checkpoint.keep == 2
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("table, field", [
    ({"model": {"preset": "gemma-9000"}}, "model.preset"),
    ({"model": {"dmodel": 64}}, "model.dmodel"),
    ({"model": {"d_model": -1}}, "d_model"),
    ({"optim": {"lr": -1.0}}, "optim.lr"),
    ({"optim": {"lrate": 1.0}}, "optim.lrate"),
    ({"optim": {"beta2": 1.5}}, "optim.beta2"),
    ({"train": {"max_steps": 1.5}}, "train.max_steps"),
    ({"train": {"precision": "float16"}}, "train.precision"),
    ({"train": {"global_batch": 10, "micro_batch": 4}}, "train.global_batch"),
    ({"eval": "often"}, "eval"),
    ({"epochs": 3}, "epochs"),
])
def test_errors_name_the_field(table, field):
    with pytest.raises(TrainError, match=field.replace(".", r"\.")):
        TrainConfig.from_dict(table)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(TrainError, match="cannot read config"):
        TrainConfig.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = 1")
    with pytest.raises(TrainError, match="not valid TOML"):
        TrainConfig.load(bad)
    bad.write_text("[optim]\nlr = -3\n")
    with pytest.raises(TrainError, match=r"bad\.toml: optim\.lr"):
        TrainConfig.load(bad)


def test_demo_config_is_a_10_to_20m_gemma():
    cfg = TrainConfig.load(CONFIGS / "pretrain-demo.toml")
    n = gf.Gemma(cfg.model.gemma_config()).num_parameters()
    assert 10e6 <= n <= 20e6, n


TRAINING_VERBS = [["pretrain"], ["sft"], ["reward", "train"], ["dpo"], ["rlhf"]]


@pytest.mark.parametrize("verb", TRAINING_VERBS, ids=" ".join)
def test_every_training_verb_takes_the_same_overrides(verb):
    from gemmaforge.cli import build_parser
    from gemmaforge.train.launch import config_with_overrides

    args = build_parser().parse_args([*verb, "--config", str(CONFIGS / "reward-lora.toml"), "--max-steps", "3",
                                      "--global-batch", "4", "--micro-batch", "2", "--seed", "7", "--no-compile",
                                      "--out-dir", "runs/x", "--init-from", "runs/sft", "--train-data", "p.jsonl",
                                      "--val-data", "v.jsonl"])
    c = config_with_overrides(args)
    assert (c.train.max_steps, c.train.global_batch, c.train.micro_batch, c.train.seed, c.train.compile) == \
        (3, 4, 2, 7, False)
    assert (c.out_dir, c.model.init_from, c.data.train, c.data.val) == ("runs/x", "runs/sft", "p.jsonl", "v.jsonl")
    untouched = config_with_overrides(build_parser().parse_args([*verb, "--config", str(CONFIGS / "reward-lora.toml")]))
    assert untouched == TrainConfig.load(CONFIGS / "reward-lora.toml")


def test_an_override_is_validated_like_the_file():
    from gemmaforge.cli import build_parser
    from gemmaforge.train.launch import config_with_overrides

    args = build_parser().parse_args(["dpo", "--config", str(CONFIGS / "dpo-lora.toml"), "--global-batch", "3"])
    with pytest.raises(TrainError, match="train.global_batch: must be a multiple of train.micro_batch"):
        config_with_overrides(args)
