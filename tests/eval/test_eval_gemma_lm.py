"""The gemmaforge adapter: batched, prefix-shared log-likelihoods equal one-request-at-a-time
forward passes; generation is batched through the engine."""

from __future__ import annotations

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


def test_generation_is_batched_by_settings_and_returns_n_samples(tiny_model, char_tokenizer, monkeypatch):
    calls = []

    def fake_generate(model, tok, prompts, max_new_tokens, temperature, seed, stop, truncate):
        assert truncate
        calls.append((len(prompts), max_new_tokens, temperature, tuple(stop)))
        return [f"<{p[-3:]}>" for p in prompts]

    monkeypatch.setattr(gemmaforge, "generate", fake_generate, raising=False)
    lm = GemmaLM(tiny_model, char_tokenizer, batch_size=4)
    reqs = [GenerateRequest(f"prompt {i:03d}", 16, ("\n",)) for i in range(6)]
    reqs.append(GenerateRequest("sampled", 8, (), temperature=0.5, n=3))
    out = lm.generate(reqs)
    assert out[0] == ["<000>"] and out[5] == ["<005>"] and out[6] == ["<led>"] * 3
    assert sorted(calls) == sorted([(4, 16, 0.0, ("\n",)), (2, 16, 0.0, ("\n",)), (3, 8, 0.5, ())])


def test_chat_template_wraps_prompts(tiny_model, char_tokenizer):
    lm = GemmaLM(tiny_model, char_tokenizer, chat=True)
    ctx, cont = lm._encode_pair(LoglikRequest("Q?", " yes"))
    assert char_tokenizer.decode(ctx) == "<user>Q?</user><model>" and char_tokenizer.decode(cont) == "yes"


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
