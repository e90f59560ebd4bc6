"""The Trainer trains any module around a Gemma: a head learns, frozen parameters stay
bit-identical and out of the checkpoint, a kill -9 resume reproduces the loss curve, and the
checkpoint rebuilds the module (wrapper config and base reference)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from head_run import HeadObjective, ParitySteps, build, parity_batch
from train_helpers import config_table, subprocess_env, to_toml

import gemmaforge as gf
from gemmaforge.errors import CheckpointError
from gemmaforge.model import Gemma
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.distributed import DistInfo
from gemmaforge.train.errors import TrainError
from gemmaforge.train.loop import Trainer
from gemmaforge.train.metrics import read_rows
from gemmaforge.train.modules import ModelWithHead, freeze
from gemmaforge.train.objective import TOKENS
from gemmaforge.train.pretrain import pretrain
from gemmaforge.train.trained import load_trained

SOLO = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
HEAD_RUN = Path(__file__).with_name("head_run.py")


def base_model(tmp_path: Path) -> Path:
    """A tiny Gemma saved with gf.save_model: the `init_from` source of the runs below."""
    if (tmp_path / "base").exists():
        return tmp_path / "base"
    torch.manual_seed(1)
    model = Gemma(gf.GemmaConfig.preset("tiny-gemma-mqa"))
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    return gf.save_model(model, tmp_path / "base")


def head_config(tmp_path: Path, name: str, steps: int, **sections) -> TrainConfig:
    table = config_table(tmp_path, out_dir=str(tmp_path / name), model={"init_from": str(base_model(tmp_path))},
                         optim={"lr": 3e-3, "warmup_steps": 0, "weight_decay": 0.0},
                         train={"max_steps": steps, "global_batch": 16, "micro_batch": 8},
                         checkpoint={"interval": 5, "keep": 2}, **sections)
    (tmp_path / f"{name}.toml").write_text(to_toml(table))
    return TrainConfig.from_dict(table)


def accuracy(model, seed: int = 10_000) -> float:
    ids, labels = parity_batch(seed, 256)
    with torch.no_grad():
        return float((model(ids).argmax(-1) == labels).float().mean())


def test_a_head_learns_and_its_checkpoint_rebuilds_the_module(tmp_path):
    config = head_config(tmp_path, "head", steps=40)
    model = build(config, [])
    assert accuracy(model) < 0.65
    Trainer(model, HeadObjective(), ParitySteps(16, 8), config, SOLO).fit()
    rows = read_rows(tmp_path / "head" / "metrics.jsonl")
    assert rows[-1]["loss"] < 0.3 < 0.6 < rows[0]["loss"]
    assert accuracy(model) > 0.9  # on batches it never saw

    ckpt = tmp_path / "head" / "checkpoints" / "step-00000040"
    record = json.loads((ckpt / "module.json").read_text())
    assert record == {"wrapper": {"kind": "head", "config": {"n_out": 2, "pool": "last"}}, "lora": None, "base": None}
    rebuilt = load_trained(ckpt)
    assert isinstance(rebuilt, ModelWithHead)
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(CheckpointError, match="load_trained"):
        gf.load_model(ckpt)  # not a plain Gemma: one line that says how to load it


def test_freezing_keeps_the_base_bit_identical_and_out_of_optimizer_and_checkpoint(tmp_path):
    config = head_config(tmp_path, "frozen", steps=5)
    model = build(config, ["gemma.*"])
    before = {k: v.clone() for k, v in model.gemma.state_dict().items()}
    trainer = Trainer(model, HeadObjective(), ParitySteps(16, 8), config, SOLO)
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == \
        {id(model.head.weight), id(model.head.bias)}
    head_before = model.head.weight.clone()
    trainer.fit()
    for k, v in model.gemma.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.head.weight, head_before)

    ckpt = tmp_path / "frozen" / "checkpoints" / "step-00000005"
    from safetensors.torch import load_file

    assert sorted(load_file(ckpt / "model.safetensors")) == ["head.bias", "head.weight"]
    optim = torch.load(ckpt / "optimizer.pt", weights_only=True)["optimizer"]
    assert sorted(optim["state"]) == ["head.bias", "head.weight"]
    base = json.loads((ckpt / "module.json").read_text())["base"]
    assert base["source"] == str(tmp_path / "base") and len(base["sha256"]) == 64
    rebuilt = load_trained(ckpt)
    assert torch.equal(rebuilt.head.weight, model.head.weight)
    assert torch.equal(rebuilt.gemma.embed.weight, before["embed.weight"])

    tampered = gf.load_model(tmp_path / "base")
    with torch.no_grad():
        tampered.layers[0].mlp.up_proj.weight[0, 0] += 1e-3
    gf.save_model(tampered, tmp_path / "base", overwrite=True)
    with pytest.raises(TrainError, match="frozen base .* has changed"):
        load_trained(ckpt)


def test_killed_head_run_resumes_to_the_same_loss_curve(tmp_path):
    """kill -9 a run that trains a head and all but one frozen Block, then --resume: the loss log
    equals an uninterrupted run's, and the frozen Block is still the base's."""
    steps = 20
    head_config(tmp_path, "whole", steps)
    head_config(tmp_path, "killed", steps)
    command = [sys.executable, str(HEAD_RUN)]
    whole = subprocess.Popen([*command, str(tmp_path / "whole.toml")], env=subprocess_env(), stderr=subprocess.PIPE)
    victim = subprocess.Popen([*command, str(tmp_path / "killed.toml")], env=subprocess_env(),
                              stderr=subprocess.PIPE)
    first = tmp_path / "killed" / "checkpoints" / "step-00000005"
    deadline = time.monotonic() + 90
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    written = sorted(p.name for p in first.parent.iterdir() if not p.name.startswith("."))
    assert f"step-{steps:08d}" not in written, written
    resumed = subprocess.run([*command, str(tmp_path / "killed.toml"), "--resume"], env=subprocess_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert whole.wait(timeout=120) == 0, whole.stderr.read()
    got, want = read_rows(tmp_path / "killed" / "metrics.jsonl"), read_rows(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(1, steps + 1))
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
    assert [r["grad_norm"] for r in got] == [r["grad_norm"] for r in want]
    assert got[-1]["loss"] < got[0]["loss"]
    final = load_trained(tmp_path / "killed" / "checkpoints" / f"step-{steps:08d}")
    base = gf.load_model(tmp_path / "base")
    assert torch.equal(final.gemma.layers[0].attn.q_proj.weight, base.layers[0].attn.q_proj.weight)
    assert not torch.equal(final.gemma.layers[1].attn.q_proj.weight, base.layers[1].attn.q_proj.weight)


def test_resume_refuses_another_module(tmp_path):
    config = head_config(tmp_path, "run", steps=5)
    Trainer(build(config, []), HeadObjective(), ParitySteps(16, 8), config, SOLO).fit()
    model = build(config, [])
    model.pool = "mean"
    with pytest.raises(TrainError, match=r"module wrapper: .*\"last\".* there, .*\"mean\".* here"):
        Trainer(model, HeadObjective(), ParitySteps(16, 8), config, SOLO).fit(resume=True)


def test_resume_refuses_a_changed_frozen_base(tmp_path):
    config = head_config(tmp_path, "run", steps=5)
    Trainer(build(config, ["gemma.*"]), HeadObjective(), ParitySteps(16, 8), config, SOLO).fit()
    changed = gf.load_model(tmp_path / "base")
    with torch.no_grad():
        changed.embed.weight[0, 0] += 1e-3
    gf.save_model(changed, tmp_path / "base", overwrite=True)
    with pytest.raises(TrainError, match=r"written by a different run \(module base: \{\"sha256\": "):
        Trainer(build(config, ["gemma.*"]), HeadObjective(), ParitySteps(16, 8), config, SOLO).fit(resume=True)


def test_init_from_starts_pretraining_from_a_source(tmp_path):
    """The first step's loss is the loaded model's loss on the first batch, not a fresh init's."""
    source = base_model(tmp_path)
    table = config_table(tmp_path, model={"init_from": str(source)}, train={"max_steps": 1})
    pretrain(TrainConfig.from_dict(table))
    first = read_rows(tmp_path / "run" / "metrics.jsonl")[0]["loss"]
    from gemmaforge.train.data import StepBatches, open_blocks
    from gemmaforge.train.objective import NextTokenObjective

    blocks = open_blocks(table["data"]["train"], 32, 512, "data.train")
    batch = torch.cat(StepBatches(blocks, 16, 4, 0).micro_batches(0))
    expected = NextTokenObjective().loss(gf.load_model(source), batch)[0].item()
    assert first == pytest.approx(expected, rel=1e-5)
    with pytest.raises(TrainError, match="model.init_from: .*nowhere"):
        pretrain(TrainConfig.from_dict(config_table(tmp_path, out_dir=str(tmp_path / "x"),
                                                    model={"init_from": str(tmp_path / "nowhere")})))


def test_freeze_pattern_naming_nothing_is_an_error():
    with pytest.raises(TrainError, match=r"model.freeze: 'blocks\.\*' names no parameter"):
        freeze(Gemma(gf.GemmaConfig.preset("tiny-gemma-mqa")), ["blocks.*"])


# -- contracts -----------------------------------------------------------------------------------
class NoTokens:
    def loss(self, model, batch):
        return model(batch).mean(), {TOKENS: 1.0}


class NoTokensMetric(HeadObjective):
    def loss(self, model, batch):
        return super().loss(model, batch)[0], {}


def test_objective_and_step_data_are_checked_once_at_start(tmp_path):
    config = head_config(tmp_path, "c", steps=1)
    model = build(config, [])
    with pytest.raises(TrainError, match=r"NoTokens is not an Objective: it lacks tokens\(\.\.\.\)"):
        Trainer(model, NoTokens(), ParitySteps(16, 8), config, SOLO)

    class NoPosition:
        def micro_batches(self, step):
            return []

        def identity(self):
            return {}

    with pytest.raises(TrainError, match=r"NoPosition is not a StepData: it lacks position\(\.\.\.\)"):
        Trainer(model, HeadObjective(), NoPosition(), config, SOLO)
    trainer = Trainer(model, NoTokensMetric(), ParitySteps(16, 8), config, SOLO)
    with pytest.raises(TrainError, match=r"must report the tokens it averaged over as metrics\['tokens'\]"):
        trainer.train_step(0)


class Rollouts(ParitySteps):
    """On-policy: each step's batch is labelled by the current model's own predictions."""

    on_policy = True

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.seen = []

    def micro_batches(self, step, model):
        self.seen.append(model)
        ids, _ = parity_batch(step, self.global_batch)
        with torch.no_grad():
            return [(ids, model(ids).argmax(-1))]


class Probe:
    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, model):
        self.calls += 1
        assert not model.training and not torch.is_grad_enabled()
        return {"val_loss": 1.5, "val_accuracy": accuracy(model)}


def test_on_policy_data_gets_the_current_model_and_validation_is_a_hook(tmp_path):
    config = head_config(tmp_path, "rl", steps=4, eval={"interval": 2})
    model = build(config, [])
    data, probe = Rollouts(16, 16), Probe()
    Trainer(model, HeadObjective(), data, config, SOLO, validation=probe).fit()
    assert len(data.seen) == 4 and all(m is model for m in data.seen)
    assert probe.calls == 2
    rows = read_rows(tmp_path / "rl" / "metrics.jsonl")
    assert [r.get("val_loss") for r in rows] == [None, 1.5, None, 1.5]
    assert all(0 <= r["val_accuracy"] <= 1 for r in rows if "val_accuracy" in r)
