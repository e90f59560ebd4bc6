"""Gemma vs transformers' Gemma/Gemma2/Gemma3 on tiny random configs (the numerical proof)."""

import pytest
import torch
from model_helpers import hf_twin, random_gemma

pytestmark = pytest.mark.oracle


def test_float32_logits_match_transformers(tiny_name):
    model = random_gemma(tiny_name)
    hf = hf_twin(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert ours.shape == (2, 40, model.config.vocab_size)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_padded_batch_matches_transformers_and_solo_runs(tiny_name):
    model = random_gemma(tiny_name)
    hf = hf_twin(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0  # left padding
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = hf(ids, attention_mask=mask).logits
        solo = model(ids[:1, 7:])
    assert (ours[0, 7:] - theirs[0, 7:]).abs().max() <= 1e-4
    assert (ours[1] - theirs[1]).abs().max() <= 1e-4
    assert (ours[0, 7:] - solo[0]).abs().max() <= 1e-4


# Measured on this machine with these configs (weights std 0.1): max |Δlogit| 0.031–0.049 at logits of
# magnitude 3.4–5.9, top-1 identical everywhere (bf16 keeps 8 mantissa bits). The bound is 3x that.
BF16_BOUND = 0.15


def test_bfloat16_matches_transformers_within_measured_bound(tiny_name):
    model = random_gemma(tiny_name, std=0.1)
    hf = hf_twin(model)
    model, hf = model.to(torch.bfloat16), hf.to(torch.bfloat16)
    ids = torch.randint(0, model.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = model(ids).float(), hf(ids).logits.float()
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert (ours - theirs).abs().max().item() <= BF16_BOUND
    assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() >= 0.9
