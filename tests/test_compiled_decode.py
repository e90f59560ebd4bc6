"""The compiled decode step (inference.compiled): the same tokens as eager decoding, over a static cache."""

import pytest
import torch
from byte_tokenizer import ByteTokenizer
from model_helpers import random_gemma
from test_generate import run

import gemmaforge as gf
from gemmaforge.inference import compiled
from gemmaforge.inference.generate import Decoder
from gemmaforge.inference.sampling import Sampling

PROMPTS = [[2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [2, 40], [2, 77, 78, 79, 80]]


def test_compiled_step_logits_equal_the_eager_forward():
    """Left-padded rows of different lengths, 24 positions: tiny-gemma3's window of 8 wraps its ring
    buffers several times while the global layers keep every position."""
    model = random_gemma("tiny-gemma3", std=0.1)
    static = model.new_cache(3, compiled.static_length(30, model.config.max_seq_len), static=True)
    eager = model.new_cache(3, 30)
    width = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    with torch.inference_mode():
        a, b = model(ids, mask, cache=static)[:, -1:], model(ids, mask, cache=eager)[:, -1:]
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        for _ in range(12):
            nxt = b.argmax(-1)
            a, b = compiled.compiled_decode(model, nxt, static), model(nxt, cache=eager)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # inductor may reorder float sums
    assert static.length == eager.length


def test_compiled_decoding_gives_the_same_tokens_greedy_and_sampled():
    model = random_gemma("tiny-gemma3", std=0.1)
    for sampling in (Sampling(), Sampling(temperature=0.8, top_k=50, seed=3)):
        assert run(model, PROMPTS, 16, sampling=sampling, compile=True) == run(model, PROMPTS, 16, sampling=sampling)
    assert compiled._broken is None  # the compiled program ran, not the eager fallback


def test_a_quantised_model_decodes_compiled_through_generate():
    model = gf.quantize(random_gemma("tiny-gemma-mqa", std=0.1), "int8")
    tok = ByteTokenizer()
    prompts = ["ab", "a longer prompt"]
    assert gf.generate(model, tok, prompts, 12, compile=True) == gf.generate(model, tok, prompts, 12)
    assert "".join(gf.stream(model, tok, "ab", 12, compile=True)) == gf.generate(model, tok, ["ab"], 12)[0]
    assert compiled._broken is None  # the quantised products traced into the program, no eager fallback


def test_without_a_working_compiler_it_warns_and_decodes_eagerly(monkeypatch):
    model = random_gemma("tiny-gemma-mqa", std=0.1)

    def broken():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled, "_program", broken)
    monkeypatch.setattr(compiled, "_broken", None)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler"):
        got = run(model, PROMPTS, 8, compile=True)
    assert got == run(model, PROMPTS, 8)


def test_compile_with_what_it_cannot_serve_is_a_clear_error():
    model = random_gemma("tiny-gemma-mqa", std=0.1)
    with pytest.raises(gf.InputError, match="cannot be combined with speculative"):
        Decoder(model, [[2, 5]], 4, compile=True, speculative="prompt-lookup")
    with pytest.raises(ValueError, match="static KV cache"):
        compiled.compiled_decode(model, torch.tensor([[5]]), model.new_cache(1, 8))


@pytest.mark.parametrize("need, context, want", [(1, 8192, 256), (256, 8192, 256), (257, 8192, 512),
                                                 (300, 300, 300), (900, 1000, 1000)])
def test_static_lengths_are_rounded_up_within_the_context(need, context, want):
    assert compiled.static_length(need, context) == want
