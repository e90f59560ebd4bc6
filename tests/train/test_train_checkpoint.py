"""Checkpoints: a full round trip, atomic directories, pruning, and refusing the wrong run."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import gemmaforge as gf
from gemmaforge.train.checkpoint import (
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    read_meta,
    remove_partial,
    save_checkpoint,
)
from gemmaforge.train.config import OptimSection
from gemmaforge.train.distributed import DistInfo
from gemmaforge.train.errors import TrainError
from gemmaforge.train.optim import build_optimizer
from gemmaforge.weights.sources import step_dirs

SOLO = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def trained(seed: int):
    torch.manual_seed(seed)
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma-mqa"))
    opt, sched = build_optimizer(model, OptimSection(lr=1e-2, warmup_steps=2), max_steps=10)
    for _ in range(2):
        model(torch.randint(0, 512, (2, 8))).logsumexp(-1).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


def save(directory, step, model, opt, sched, keep=3, sharded=False):
    return save_checkpoint(directory, step, model, model.config, opt, sched,
                           {"identity": {"blocks": 10}}, keep, SOLO, sharded=sharded)


@pytest.mark.parametrize("sharded", [False, True], ids=["full", "sharded"])
def test_round_trip_restores_everything(tmp_path, sharded):
    model, opt, sched = trained(0)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save(tmp_path, 2, model, opt, sched, sharded=sharded)
    assert (path / "sharded").is_dir() == sharded and (path / "model.safetensors").exists() != sharded
    expected = (random.random(), np.random.rand(), torch.rand(1))

    other, opt2, sched2 = trained(1)
    meta = load_checkpoint(path, other, opt2, sched2, SOLO)
    assert meta["step"] == 2 and meta["identity"] == {"blocks": 10}
    for (n, p), q in zip(model.named_parameters(), other.parameters()):
        assert torch.equal(p, q), n
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert sched2.state_dict()["last_epoch"] == 2 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    loaded = gf.load_model(path)  # the model part is an ordinary gemmaforge checkpoint
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), loaded.parameters()))


def test_keeps_the_newest_and_ignores_partial_writes(tmp_path):
    model, opt, sched = trained(0)
    for step in (1, 2, 3):
        save(tmp_path, step, model, opt, sched, keep=2)
    (tmp_path / ".tmp-step-00000004").mkdir()  # what a kill during a save leaves
    assert [p.name for p in step_dirs(tmp_path)] == ["step-00000002", "step-00000003"]
    assert latest_checkpoint(tmp_path).name == "step-00000003"
    remove_partial(tmp_path)
    assert not (tmp_path / ".tmp-step-00000004").exists()


def test_refuses_a_checkpoint_of_another_run(tmp_path):
    model, opt, sched = trained(0)
    path = save(tmp_path, 1, model, opt, sched)
    meta = read_meta(path)
    check_compatible(path, meta, model.config, {"blocks": 10})
    with pytest.raises(TrainError, match=r"model\.d_model: 64 there, 128 here"):
        check_compatible(path, meta, model.config.replace(d_model=128), {"blocks": 10})
    with pytest.raises(TrainError, match=r"blocks: 10 there, 11 here"):
        check_compatible(path, meta, model.config, {"blocks": 11})
    (path / "trainer.json").write_text("{")
    with pytest.raises(TrainError, match="not a readable training checkpoint"):
        read_meta(path)
    assert json.loads((path / "config.json").read_text())["d_model"] == 64


def test_a_corrupt_sharded_checkpoint_is_one_clear_error(tmp_path):
    model, opt, sched = trained(0)
    path = save(tmp_path, 1, model, opt, sched, sharded=True)
    for shard in (path / "sharded").glob("*.distcp"):
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(TrainError, match="unreadable sharded checkpoint"):
        load_checkpoint(path, *trained(1), SOLO)
    with pytest.raises(gf.CheckpointError, match="not a readable sharded checkpoint"):
        gf.load_model(path)
