"""Warm-up + cosine, and which parameters AdamW decays."""

from __future__ import annotations

import math

import pytest

import gemmaforge as gf
from gemmaforge.train.config import OptimSection
from gemmaforge.train.optim import build_optimizer, param_groups
from gemmaforge.train.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    f = warmup_cosine(warmup=4, total=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


def test_scheduler_drives_the_optimizer_lr():
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma-mqa"))
    opt, sched = build_optimizer(model, OptimSection(lr=1.0, warmup_steps=2, min_lr_ratio=0.0), max_steps=4)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0], abs=1e-12)


@pytest.mark.parametrize("decay_norms, decay_embeddings", [(False, False), (True, False), (False, True)])
def test_no_decay_on_norms_and_embeddings_unless_asked(decay_norms, decay_embeddings):
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma2"))
    groups = param_groups(model, OptimSection(weight_decay=0.1, decay_norms=decay_norms,
                                              decay_embeddings=decay_embeddings))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert len(decayed) + len(groups[1]["params"]) == len(names)
    assert ("embed.weight" in decayed) == decay_embeddings
    assert ("layers.0.post_attn_norm.weight" in decayed) == decay_norms
    assert "layers.0.attn.q_proj.weight" in decayed
