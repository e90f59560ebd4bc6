"""The gemmaforge adapter: batched, prefix-shared log-likelihoods equal one-request-at-a-time
forward passes; generation is batched through the engine."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

import gemmaforge
from gemmaforge.errors import InputError
from gemmaforge.eval.gemma_lm import GemmaLM
from gemmaforge.eval.lm import GenerateRequest, LoglikRequest

model_mod = pytest.importorskip("gemmaforge.model")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = model_mod.Gemma(gemmaforge.GemmaConfig.preset("tiny-gemma3"))  # sliding window 8
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def _requests(n_questions: int = 4, seed: int = 0) -> list[LoglikRequest]:
    """Questions sharing a long exemplar prefix; one-token and multi-token choices; a loner."""
    rng = random.Random(seed)
    prefix = "".join(rng.choice("abcdefgh ") for _ in range(60))
    reqs = []
    for _ in range(n_questions):
        ctx = prefix + "".join(rng.choice("xyz ") for _ in range(rng.randint(3, 15))) + ": "
        reqs += [LoglikRequest(ctx, c) for c in ("A", "B")]
        reqs += [LoglikRequest(ctx, "".join(rng.choice("pqrs") for _ in range(rng.randint(1, 6))))
                 for _ in range(3)]
    return reqs + [LoglikRequest("short", " a")]


def _one_at_a_time(model, tok, req: LoglikRequest) -> float:
    """Full forward of one request; the context's trailing spaces belong to the continuation."""
    context = req.context.rstrip()
    ids = tok.encode(req.context + req.continuation)
    n = len(tok.encode(context))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids[:-1]])).float(), -1)[0]
    return sum(logp[n - 1 + j, ids[n + j]].item() for j in range(len(ids) - n))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_prefix_shared_scores_equal_single_passes(tiny_model, char_tokenizer, batch_size, monkeypatch):
    lm = GemmaLM(tiny_model, char_tokenizer, batch_size=batch_size)
    prefills = []
    real_prefill = lm._prefill
    monkeypatch.setattr(lm, "_prefill", lambda t, m: prefills.append(len(t)) or real_prefill(t, m))
    reqs = _requests()
    got = lm.loglikelihood(reqs)
    for g, r in zip(got, reqs):
        assert g.logprob == pytest.approx(_one_at_a_time(tiny_model, char_tokenizer, r), abs=2e-4)
        assert g.n_tokens == len(r.continuation) + len(r.context) - len(r.context.rstrip())
    # The shared prefix ran once per run of identical prefixes, not once per row.
    assert prefills and len(prefills) <= len(reqs) / max(batch_size, 2)


def test_one_token_choices_share_one_row(tiny_model, char_tokenizer):
    lm = GemmaLM(tiny_model, char_tokenizer)
    reqs = [LoglikRequest("Question: 2+2?\nAnswer:", f" {c}") for c in "ABCD"]
    rows, _ = lm._rows(reqs)
    assert len(rows) == 1 and len(rows[0].scores) == 4


def test_greedy_flag_and_trailing_space_handling(tiny_model, char_tokenizer):
    lm = GemmaLM(tiny_model, char_tokenizer)
    a, b = lm.loglikelihood([LoglikRequest("abc ", "d"), LoglikRequest("abc", " d")])
    assert a.logprob == pytest.approx(b.logprob) and a.n_tokens == b.n_tokens == 2
    with torch.no_grad():
        top = int(tiny_model(torch.tensor([char_tokenizer.encode("abc")]))[0, -1].argmax())
    best = lm.loglikelihood([LoglikRequest("abc", char_tokenizer.decode([top]))])[0]
    assert best.greedy


def test_generation_batches_by_settings_and_n_samples_are_independent(tiny_model, char_tokenizer):
    """The real engine, no fake: greedy requests equal gf.generate alone; n sampled completions of
    one prompt differ from each other, and each equals its (seed, sample id) generated alone."""
    lm = GemmaLM(tiny_model, char_tokenizer, batch_size=4)
    reqs = [GenerateRequest(f"prompt {i:03d}", 6, ("\n",)) for i in range(6)]
    reqs.append(GenerateRequest("sampled", 8, (), temperature=2.0, seed=3, n=5))
    out = lm.generate(reqs)
    for r, got in zip(reqs[:6], out[:6]):
        assert got == gemmaforge.generate(tiny_model, char_tokenizer, [r.prompt], 6, stop=["\n"])
    samples = out[6]
    assert len(samples) == 5 and len(set(samples)) == 5  # pass@k sees different completions
    sampling = gemmaforge.Sampling(temperature=2.0, seed=3)
    for j in (0, 3):
        assert samples[j] == gemmaforge.generate(tiny_model, char_tokenizer, ["sampled"], 8, sampling=sampling,
                                                 sample_ids=[6 * 5 + j])[0]


def test_kv_cache_repeat_copies_a_prefill_into_n_rows(tiny_model):
    prompt = torch.tensor([[2, 40, 41, 42, 43, 44, 45, 46, 47, 48]])  # longer than the window of 8
    one = tiny_model.new_cache(1, 16)
    tiny_model(prompt, cache=one)
    three = one.repeat(3)
    nxt = torch.tensor([[7], [8], [9]])
    with torch.no_grad():
        got = tiny_model(nxt, cache=three)[:, -1]
        for i in range(3):
            want = tiny_model(torch.cat([prompt, nxt[i:i + 1]], 1))[:, -1]
            assert torch.allclose(got[i], want[0], atol=1e-5)


@pytest.fixture(scope="module")
def real_tok():
    return gemmaforge.load_tokenizer("gemma3-270m")


@pytest.fixture(scope="module")
def full_vocab_model():
    """A tiny random Gemma with gemma3's 262,144-token vocabulary, for the real tokenizer."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(gemmaforge.GemmaConfig.preset("tiny-gemma3"), vocab_size=262_144)
    return model_mod.Gemma(cfg).eval()


def test_chat_mode_keeps_the_templates_newline_in_the_context(full_vocab_model, real_tok):
    """Gemma's real template ends the context with `<start_of_turn>model\n`; the scored tokens are
    the answer's alone (no "\n", no delimiter space), and the log-likelihood is theirs alone."""
    lm = GemmaLM(full_vocab_model, real_tok, chat=True)
    ctx, cont = lm._encode_pair(LoglikRequest("Is the sky blue?\nAnswer:", " yes"))
    rendered = real_tok.apply_chat_template([{"role": "user", "content": "Is the sky blue?\nAnswer:"}],
                                            add_generation_prompt=True)
    assert rendered.endswith("<start_of_turn>model\n")
    assert ctx == real_tok.encode(rendered) and real_tok.decode(ctx).endswith("<start_of_turn>model\n")
    assert cont == real_tok.encode("yes", add_bos=False)
    res = lm.loglikelihood([LoglikRequest("Is the sky blue?\nAnswer:", " yes")])[0]
    assert res.n_tokens == len(cont) == 1
    with torch.no_grad():
        logp = torch.log_softmax(full_vocab_model(torch.tensor([ctx])).float()[0, -1], -1)
    assert res.logprob == pytest.approx(logp[cont[0]].item(), abs=1e-4)


def test_chat_mode_drops_only_the_delimiter_space(full_vocab_model, real_tok):
    """An answer that itself starts with a space keeps it (lm-eval's chat continuation is the
    choice without the target delimiter)."""
    lm = GemmaLM(full_vocab_model, real_tok, chat=True)
    ctx, cont = lm._encode_pair(LoglikRequest("Q", "  two spaces"))
    assert real_tok.decode(ctx).endswith("model\n") and real_tok.decode(cont) == " two spaces"


def test_max_length_cuts_the_oldest_context_tokens_and_says_how_many(tiny_model, char_tokenizer):
    lm = GemmaLM(tiny_model, char_tokenizer, max_length=8)
    short, cut = lm.loglikelihood([LoglikRequest("ab", " c"), LoglikRequest("abcdefghij", " kl")])
    # row = BOS + 10 context characters + " k" (the last continuation token is only a target): 13 > 8
    assert short.context_dropped == 0 and cut.context_dropped == 5
    seen = lm.loglikelihood([LoglikRequest("fghij", " kl")])[0]  # what the model saw
    assert seen.context_dropped == 0 and cut.logprob == pytest.approx(seen.logprob, abs=1e-5)


def test_a_continuation_longer_than_max_length_is_an_error(tiny_model, char_tokenizer):
    lm = GemmaLM(tiny_model, char_tokenizer, max_length=5)
    with pytest.raises(InputError, match="continuation of 12 tokens .* does not fit max_length 5"):
        lm.loglikelihood([LoglikRequest("Q", " long answer")])
