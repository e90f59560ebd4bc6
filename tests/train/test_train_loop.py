"""The training loop in-process: it learns, reports, and its options do not change the maths."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from train_helpers import config_table

from gemmaforge.model import Gemma
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.distributed import DistInfo
from gemmaforge.train.loop import Trainer
from gemmaforge.train.losses import chunked_cross_entropy
from gemmaforge.train.metrics import read_rows
from gemmaforge.train.objective import TOKENS
from gemmaforge.train.parallelize import unwrap
from gemmaforge.train.pretrain import pretrain

SOLO = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


def run(tmp_path, name: str = "run", **sections) -> list[dict]:
    cfg = TrainConfig.from_dict(config_table(tmp_path, out_dir=str(tmp_path / name), **sections))
    pretrain(cfg)
    return read_rows(tmp_path / name / "metrics.jsonl")


def test_learns_and_reports(tmp_path):
    rows = run(tmp_path, train={"max_steps": 20}, eval={"interval": 5})
    assert [r["step"] for r in rows] == list(range(1, 21))
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "tokens"):
        assert all(r[key] >= 0 for r in rows), key
    assert rows[0]["tokens"] == 16 * 32
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(val) == 4 and val[-1] < val[0] - 1.0 and rows[-1]["loss"] < rows[0]["loss"] - 1.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["val_loss"] == val[-1] and summary["val_loss"] < summary["val_unigram_entropy"]
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-00000018", "step-00000020"]  # every 3 steps, the newest 2 kept


@pytest.mark.parametrize("option", [{"micro_batch": 16}, {"micro_batch": 2}, {"activation_checkpointing": True}])
def test_accumulation_and_checkpointing_keep_the_loss_curve(tmp_path, option):
    """Same global batch of 16: one micro-batch, eight, or recomputed Blocks."""
    base = run(tmp_path, "base", train={"max_steps": 4})
    other = run(tmp_path, "other", train={"max_steps": 4, **option})
    for a, b in zip(base, other):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)


def test_compiled_blocks_keep_the_loss_curve(tmp_path, monkeypatch):
    """train.compile wires torch.compile into every Block. The aot_eager backend traces forward and
    backward exactly as inductor would but skips C++ code generation, which takes a minute here
    (benchmarks/bench_train.py runs the inductor build)."""
    compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compile(self, backend="aot_eager", **kw))
    base = run(tmp_path, "base", train={"max_steps": 3})
    torch._dynamo.utils.counters.clear()
    compiled = run(tmp_path, "compiled", train={"max_steps": 3, "compile": True})
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the Blocks really were compiled
    for a, b in zip(base, compiled):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


class MaskedObjective:
    """SFT-like: labels of -100 are not scored, so micro-batches score different numbers of tokens."""

    def loss(self, model, batch):
        ids, labels = batch
        gemma = unwrap(model)
        loss = chunked_cross_entropy(model(ids, logits_at="none"), gemma.embed.weight, labels, None)
        return loss, {TOKENS: float((labels != -100).sum())}

    def tokens(self, batch):
        return int((batch[1] != -100).sum())


class TwoMicroBatches:
    def __init__(self, batch) -> None:
        self.batch = batch

    def micro_batches(self, step):
        ids, labels = self.batch
        return [(ids[:2], labels[:2]), (ids[2:], labels[2:])]

    def position(self, step):
        return 4 * step

    def identity(self):
        return {}


def masked_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 512, (4, 16), generator=g)
    labels = torch.randint(0, 512, (4, 16), generator=g)
    labels[:2, :1] = -100  # 30 + 30 scored
    labels[2:, 3:] = -100  # 3 + 3 scored
    return ids, labels


def test_accumulation_weights_micro_batches_by_their_scored_tokens(tmp_path):
    """Two micro-batches of 60 and 6 scored tokens give the gradient and loss of one batch's
    per-token mean (a mean of the two micro-batch means would differ)."""
    ids, labels = masked_batch()
    cfg = TrainConfig.from_dict(config_table(tmp_path, train={"global_batch": 4, "micro_batch": 2},
                                             optim={"grad_clip": 0.0}))
    torch.manual_seed(0)
    model = Gemma(cfg.model.gemma_config())
    reference = copy.deepcopy(model)
    trainer = Trainer(model, MaskedObjective(), TwoMicroBatches((ids, labels)), cfg, SOLO)
    row = trainer.train_step(0)

    loss = chunked_cross_entropy(reference(ids, logits_at="none"), reference.embed.weight, labels, None)
    loss.backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()]))
    assert row["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert row["grad_norm"] == pytest.approx(norm.item(), rel=1e-4)
    halves = [chunked_cross_entropy(reference(i, logits_at="none"), reference.embed.weight, lab, None).item()
              for i, lab in ((ids[:2], labels[:2]), (ids[2:], labels[2:]))]
    assert abs(sum(halves) / 2 - loss.item()) > 1e-3  # the weighting matters on this batch
