"""Pair features: batched, right-padded, early-stopped sums equal a plain one-by-one forward."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from byte_tokenizer import ByteTokenizer  # noqa: E402
from model_helpers import random_gemma  # noqa: E402

from gemmaforge.safety.features import RESPONSE, FeatureSpec, pair_features, render, segment_sums


class ChatBytes(ByteTokenizer):
    start_of_turn_id = 260


PAIRS = [("How do I bake bread?", "Mix flour, water and yeast."), ("hi", ""),
         ("A much longer prompt that will be cut to the cap " * 3, "Sure, here is how: step one " * 3)]
SPEC = FeatureSpec(layer=3, prompt_tokens=40, response_tokens=30)


def reference(model, tok, prompt, response, layer):
    """Hidden states after block `layer`, from a full unpadded forward of one pair."""
    ids, header, start = render(tok, prompt, response, SPEC)
    out = {}
    h = model.layers[layer - 1].register_forward_hook(lambda m, i, o: out.setdefault("x", o))
    try:
        with torch.no_grad():
            model(torch.tensor([ids]), logits_at="none")
    finally:
        h.remove()
    x = out["x"][0]
    return torch.stack([x[:header].sum(0), x[header:start].sum(0), x[start:].sum(0)]), (header, start, len(ids))


def test_segment_sums_match_one_by_one_forward():
    model, tok = random_gemma("tiny-gemma3", std=0.05), ChatBytes()
    sums, counts = segment_sums(model, tok, PAIRS, SPEC, layers=(1, 3), batch_size=2)
    for i, (p, r) in enumerate(PAIRS):
        for layer in (1, 3):
            ref, (header, start, n) = reference(model, tok, p, r, layer)
            torch.testing.assert_close(sums[layer][i], ref, atol=1e-4, rtol=1e-4)
        assert counts[i].tolist() == [header, start - header, n - start]
    assert counts[1, RESPONSE] == 0  # an empty response leaves the header alone
    assert not any(layer._forward_hooks for layer in model.layers)  # hooks removed


def test_prompt_alone_is_the_pair_with_an_empty_response():
    model, tok = random_gemma("tiny-gemma3", std=0.05), ChatBytes()
    sums, counts = segment_sums(model, tok, [(PAIRS[0][0], PAIRS[0][1]), (PAIRS[0][0], "")], SPEC)
    alone = pair_features(sums[3], counts, prompt_only=True)
    torch.testing.assert_close(alone[0], pair_features(sums[3], counts)[1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pair_features(sums[3], counts)[0], alone[0])  # the response counts


def test_deeper_blocks_are_not_run():
    model, tok = random_gemma("tiny-gemma3", std=0.05), ChatBytes()
    ran = []
    handles = [b.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, b in enumerate(model.layers)]
    segment_sums(model, tok, PAIRS[:1], FeatureSpec(layer=2))
    for h in handles:
        h.remove()
    assert ran == [0, 1]


def test_caps_and_layout():
    tok = ChatBytes()
    ids, header, start = render(tok, "x" * 100, "y" * 100, SPEC)
    assert ids[0] == tok.bos_id and ids[1] == tok.start_of_turn_id and ids[header] == tok.start_of_turn_id
    assert ids[-1] == tok.end_of_turn_id
    assert header == 2 + len("user\n") + SPEC.prompt_tokens + 2 and len(ids) - start == SPEC.response_tokens + 1
    with pytest.raises(ValueError, match="outside"):
        segment_sums(random_gemma("tiny-gemma3"), tok, PAIRS[:1], SPEC, layers=(99,))
