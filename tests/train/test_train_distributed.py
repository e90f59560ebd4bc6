"""torchrun with 2 CPU processes (gloo): DDP and FSDP2 reproduce the single-process loss curve."""

from __future__ import annotations

import pytest
import torch
from train_helpers import run_pretrain, write_config

import gemmaforge as gf
from gemmaforge.train.metrics import read_rows

# Constant LR after warm-up, so that a run stopped at step 4 and resumed to 8 follows the same schedule.
SETTINGS = dict(train={"max_steps": 8}, optim={"lr": 3e-3, "warmup_steps": 2, "min_lr_ratio": 1.0},
                checkpoint={"interval": 4, "keep": 2}, eval={"interval": 4, "blocks": 16})


def curve(run_dir) -> list[tuple[float, float, float | None]]:
    return [(r["loss"], r["grad_norm"], r.get("val_loss")) for r in read_rows(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    done = run_pretrain(write_config(tmp, **SETTINGS))
    assert done.returncode == 0, done.stderr
    return tmp / "run"


def assert_same_curve(got, want):
    assert len(got) == len(want) == 8
    for g, w in zip(got, want):
        assert g[0] == pytest.approx(w[0], rel=1e-5) and g[1] == pytest.approx(w[1], rel=1e-4)
        assert (g[2] is None) == (w[2] is None) and (g[2] is None or g[2] == pytest.approx(w[2], rel=1e-5))


def test_ddp_matches_single_process(tmp_path, single):
    done = run_pretrain(write_config(tmp_path, **{**SETTINGS, "train": {"max_steps": 8, "parallel": "ddp"}}),
                        torchrun=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_curve(curve(tmp_path / "run"), curve(single))


def test_fsdp2_matches_single_process_across_a_resume(tmp_path, single):
    """FSDP2 (fully_shard per Block, then the root) runs 4 steps, then resumes to 8 from its own
    sharded-then-gathered checkpoint."""
    first = run_pretrain(write_config(tmp_path, **{**SETTINGS, "train": {"max_steps": 4, "parallel": "fsdp"}}),
                         torchrun=2)
    assert first.returncode == 0, first.stderr[-3000:]
    config = write_config(tmp_path, **{**SETTINGS, "train": {"max_steps": 8, "parallel": "fsdp"}})
    second = run_pretrain(config, "--resume", torchrun=2)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr
    assert_same_curve(curve(tmp_path / "run"), curve(single))
    ours, theirs = (gf.load_model(d / "checkpoints" / "step-00000008") for d in (tmp_path / "run", single))
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_fsdp2_sharded_checkpoints_resume_on_another_number_of_ranks(tmp_path, single):
    """Each rank writes its own shards; the run resumes on one process and reaches the same model."""
    sharded = {**SETTINGS["checkpoint"], "format": "sharded"}
    first = run_pretrain(write_config(tmp_path, **{**SETTINGS, "checkpoint": sharded,
                                                   "train": {"max_steps": 4, "parallel": "fsdp"}}), torchrun=2)
    assert first.returncode == 0, first.stderr[-3000:]
    step4 = tmp_path / "run" / "checkpoints" / "step-00000004"
    assert sorted(p.name for p in (step4 / "sharded").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert not (step4 / "model.safetensors").exists()
    second = run_pretrain(write_config(tmp_path, **{**SETTINGS, "checkpoint": sharded}), "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_same_curve(curve(tmp_path / "run"), curve(single))
    ours, theirs = (gf.load_model(d / "checkpoints" / "step-00000008") for d in (tmp_path / "run", single))
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
