"""The details Gemma ports get wrong, each checked directly."""

import math

import pytest
import torch
import torch.nn.functional as F

import gemmaforge as gf
from gemmaforge.model import GeGLU, Gemma, RMSNorm, apply_rope, rope_cos_sin


@pytest.mark.parametrize("d_model,scale", [(2048, 45.25), (3072, 55.5)])
def test_embedding_scale_is_rounded_to_bfloat16_first(d_model, scale):
    cfg = gf.GemmaConfig.preset("tiny-gemma-mqa", d_model=d_model)
    model = Gemma(cfg).to(torch.bfloat16)
    ids = torch.tensor([[3, 7]])
    with torch.no_grad():
        out, emb = model.embed_tokens(ids), model.embed(ids)
    assert torch.equal(out, emb * torch.tensor(scale, dtype=torch.bfloat16))
    exact = (emb.float() * math.sqrt(d_model)).to(torch.bfloat16)  # scaling in fp32 differs
    assert not torch.equal(out, exact)


def test_rmsnorm_uses_one_plus_weight_in_float32():
    norm = RMSNorm(8, 1e-6)
    with torch.no_grad():
        norm.weight.fill_(0.5)
    x = torch.randn(2, 8)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * 1.5
    assert torch.allclose(norm(x), expected, atol=1e-6)
    xb = (torch.randn(2, 8) * 100).to(torch.bfloat16)
    ref = (xb.float() * torch.rsqrt(xb.float().pow(2).mean(-1, keepdim=True) + 1e-6) * 1.5).to(torch.bfloat16)
    assert torch.equal(norm.to(torch.bfloat16)(xb), ref)


def test_geglu_uses_tanh_gelu():
    cfg = gf.GemmaConfig.preset("tiny-gemma-mqa")
    mlp = GeGLU(cfg)
    x = torch.randn(3, cfg.d_model) * 3
    g, u = mlp.gate_proj(x), mlp.up_proj(x)
    assert torch.allclose(mlp(x), mlp.down_proj(F.gelu(g, approximate="tanh") * u), atol=1e-6)
    assert not torch.allclose(mlp(x), mlp.down_proj(F.gelu(g) * u), atol=1e-6)


def test_rope_rotates_halves_and_preserves_relative_positions():
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        cq, sq = rope_cos_sin(torch.tensor([[pq]]), 16, 10000.0, 1.0, torch.float32)
        ck, sk = rope_cos_sin(torch.tensor([[pk]]), 16, 10000.0, 1.0, torch.float32)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    assert torch.allclose(score(5, 2), score(105, 102), atol=1e-4)
    # half-split: dimension 0 pairs with dimension 8, not with dimension 1
    cos, sin = rope_cos_sin(torch.tensor([[1]]), 16, 10000.0, 1.0, torch.float32)
    x = torch.zeros(1, 1, 1, 16)
    x[..., 0] = 1.0
    y = apply_rope(x, cos, sin)
    assert y[..., 8].item() == pytest.approx(math.sin(1.0), abs=1e-6) and y[..., 1].item() == 0.0


def test_float16_is_refused_with_a_reason():
    model = Gemma(gf.GemmaConfig.preset("tiny-gemma-mqa"))
    with pytest.raises(gf.ConfigError, match="float16 .*overflow.*bfloat16"):
        model.to(torch.float16)
    with pytest.raises(gf.ConfigError, match="float16"):
        model.half()


def test_sliding_window_counts_the_current_token():
    cfg = gf.GemmaConfig.preset("tiny-gemma3", n_layers=1, layer_types="L", sliding_window=4)
    torch.manual_seed(0)
    model = Gemma(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 12))
    with torch.no_grad():
        base = model(ids)[0, -1]
        changed = ids.clone()
        changed[0, -5] = (changed[0, -5] + 1) % cfg.vocab_size  # 5 back: outside a window of 4
        assert torch.equal(model(changed)[0, -1], base)
        changed[0, -4] = (changed[0, -4] + 1) % cfg.vocab_size  # 4 back: inside it
        assert not torch.allclose(model(changed)[0, -1], base)


def test_logits_at_last_and_hidden_states():
    model = Gemma(gf.GemmaConfig.preset("tiny-gemma2")).eval()
    ids = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        full = model(ids)
        assert torch.allclose(model(ids, logits_at="last")[:, 0], full[:, -1], atol=1e-5)
        hidden = model(ids, logits_at="none")
        assert hidden.shape == (2, 9, model.config.d_model)
        assert torch.allclose(model.logits(hidden), full, atol=1e-5)
