"""Incremental decoding through the KV cache equals one full forward pass."""

import pytest
import torch
from model_helpers import random_gemma

from gemmaforge.kv_cache import KVCache


def test_chunked_prefill_and_decode_equal_full_forward(tiny_name):
    model = random_gemma(tiny_name)  # tiny-gemma2/3 have window 8: the ring buffer wraps
    ids = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(4))
    cache = model.new_cache(batch_size=2, max_len=64)
    with torch.no_grad():
        full = model(ids)
        parts = [model(ids[:, :17], cache=cache), model(ids[:, 17:25], cache=cache)]
        parts += [model(ids[:, t:t + 1], cache=cache) for t in range(25, 40)]
    assert (torch.cat(parts, 1) - full).abs().max() <= 1e-4


def test_left_padded_batch_decodes_like_each_prompt_alone(tiny_name):
    model = random_gemma(tiny_name)
    g = torch.Generator().manual_seed(5)
    a, b = torch.randint(0, 512, (1, 12), generator=g), torch.randint(0, 512, (1, 5), generator=g)
    ids = torch.zeros(2, 12, dtype=torch.long)
    ids[0], ids[1, 7:] = a[0], b[0]
    mask = (torch.arange(12) >= torch.tensor([[0], [7]])).long()
    nxt = torch.randint(0, 512, (2, 6), generator=g)
    cache = model.new_cache(2, 32)
    with torch.no_grad():
        outs = [model(ids, attention_mask=mask, cache=cache)[:, -1:]]
        outs += [model(nxt[:, t:t + 1], cache=cache) for t in range(6)]
        batched = torch.cat(outs, 1)
        for row, prompt in enumerate((a, b)):
            alone = model(torch.cat([prompt, nxt[row:row + 1]], 1))[0, prompt.shape[1] - 1:]
            assert (batched[row] - alone).abs().max() <= 1e-4


def test_rollback_cache_truncates_and_grows_exactly(tiny_name):
    """Without rings, a cache can forget a suffix and grow; the logits stay those of a full pass."""
    model = random_gemma(tiny_name)
    ids = torch.randint(0, model.config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(6))
    other = torch.randint(0, model.config.vocab_size, (1, 10), generator=torch.Generator().manual_seed(7))
    cache = KVCache.allocate(model.config, 1, 20, model.dtype, rings=False)
    with torch.no_grad():
        model(ids[:, :20], cache=cache)
        cache.truncate(12)  # forget positions 12..19
        cache = cache.grown(40)
        got = model(torch.cat((ids[:, 12:20], other), 1), cache=cache)
        want = model(torch.cat((ids[:, :20], other), 1))[:, 12:]
    assert (got - want).abs().max() <= 1e-4
    ring = model.new_cache(batch_size=1, max_len=64)
    if any(ring.ring):  # the sliding-window models: a ring buffer refuses to roll back
        with pytest.raises(ValueError, match="cannot roll back"):
            ring.truncate(3)
