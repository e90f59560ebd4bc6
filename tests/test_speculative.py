"""Prompt-lookup speculative decoding: the same tokens as plain decoding, in fewer forward passes."""

import pytest
import torch
from byte_tokenizer import ByteTokenizer
from model_helpers import random_gemma
from test_generate import ChatBytes

import gemmaforge as gf
from gemmaforge.inference.generate import Decoder
from gemmaforge.inference.speculative import NgramIndex, PromptLookup, SpeculationStats
from gemmaforge.kv_cache import KVCache


@pytest.fixture(autouse=True)
def one_thread():
    """Token equality is what is tested, not speed; on a shared machine one thread is far faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(model, prompt, n, **kw):
    dec = Decoder(model, [prompt], n, **kw)
    return [t for (t,) in dec if t is not None], dec


def repeating_prompt(seed: int, vocab: int) -> list[int]:
    """A text that repeats with edits, so drafts are found, some accepted and some rejected."""
    base = torch.randint(4, vocab, (14,), generator=torch.Generator().manual_seed(seed)).tolist()
    return [2] + base + base[:5] + [7, 9] + base[5:] + base[:8]


def test_greedy_tokens_equal_plain_decoding_and_drafts_are_rolled_back(tiny_name):
    """tiny-gemma2/3 have a window of 8: verifying drafts writes across the ring and rolls back in it."""
    total = SpeculationStats()
    lookups = [PromptLookup(), PromptLookup(num_tokens=3, max_ngram=4, min_ngram=2), PromptLookup(6, max_ngram=1)]
    for seed, (std, lookup) in enumerate((std, lookup) for std in (0.1, 0.3) for lookup in lookups):
        model = random_gemma(tiny_name, std=std)  # small weights loop, larger ones wander
        prompt = repeating_prompt(seed, model.config.vocab_size)
        plain, _ = run(model, prompt, 32)
        spec, dec = run(model, prompt, 32, speculative=lookup)
        assert spec == plain
        assert dec.stats.tokens == 32 and dec.stats.forwards < 32
        total.add(dec.stats)
    assert 0 < total.accepted < total.drafted  # both paths of the verification ran


@pytest.mark.parametrize("sampling", [gf.Sampling(temperature=0.9, top_k=40, seed=4),
                                      gf.Sampling(temperature=0.6, top_p=0.9, seed=1),
                                      gf.Sampling(repetition_penalty=1.5)])
def test_sampling_and_repetition_penalty_give_the_same_stream(sampling):
    """Each token is drawn from the same logits by the same random stream, so the sample is the same."""
    model = random_gemma("tiny-gemma3", std=0.1)
    prompt = repeating_prompt(5, model.config.vocab_size)
    plain, ref = run(model, prompt, 24, sampling=sampling, logprobs=True)
    spec, dec = run(model, prompt, 24, sampling=sampling, logprobs=True, speculative="prompt-lookup")
    assert spec == plain and dec.stats.drafted > 0
    assert torch.allclose(torch.tensor(dec.logprobs[0]), torch.tensor(ref.logprobs[0]), atol=1e-5)


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantised_models_decode_the_same_with_and_without_speculation(scheme):
    """The verify pass runs the multi-token (prefill) kernels, plain decoding the one-token ones."""
    model = gf.quantize(random_gemma("tiny-gemma3", std=0.1), scheme)
    prompt = repeating_prompt(0, model.config.vocab_size)
    spec, dec = run(model, prompt, 32, speculative="prompt-lookup")
    assert spec == run(model, prompt, 32)[0] and dec.stats.accepted > 0


def test_stop_ids_and_every_max_new_tokens_end_where_plain_decoding_does():
    model = random_gemma("tiny-gemma3", std=0.1)
    prompt = repeating_prompt(1, model.config.vocab_size)
    plain, _ = run(model, prompt, 24)
    for n in (0, 1, 2, 3, 5, 11):
        assert run(model, prompt, n, speculative="prompt-lookup")[0] == plain[:n]
    stop = plain[7]  # a token produced mid-draft: decoding ends on it
    want = plain[:plain.index(stop) + 1]
    assert run(model, prompt, 24, stop_ids=[stop], speculative="prompt-lookup")[0] == want
    assert run(model, prompt, 24, stop_ids=[stop])[0] == want


def test_generate_and_stream_text_stop_strings_and_deltas_are_unchanged():
    model, tok = random_gemma("tiny-gemma3", std=0.1), ByteTokenizer()
    prompt = "Fix the typo: the cat sat on the mat, the cat sat on the mat, the cat sta on the mat. "
    for n in (1, 5, 40):
        plain = gf.generate(model, tok, [prompt], n)
        stats = SpeculationStats()
        assert gf.generate(model, tok, [prompt], n, speculative="prompt-lookup", stats=stats) == plain
        assert stats.tokens == n
    text = plain[0]
    stop = text[10:13]
    for kw in ({}, {"stop": [stop, "zz"]}):
        deltas = list(gf.stream(model, tok, prompt, 40, **kw))
        assert list(gf.stream(model, tok, prompt, 40, speculative=PromptLookup(4), **kw)) == deltas
    assert "".join(deltas) == text[:text.index(stop)]


def test_chat_with_a_kept_cache_replies_as_without_speculation():
    model = random_gemma("tiny-gemma3", std=0.1)
    replies = {}
    for spec in (None, "prompt-lookup"):
        session = gf.ChatSession(model, ChatBytes(), max_new_tokens=10, speculative=spec)
        replies[spec] = ["".join(session.send(text)) for text in ("abab", "abcabc", "xy")]
    assert replies["prompt-lookup"] == replies[None]
    assert 0 < session.stats.accepted < session.stats.drafted and session.stats.tokens <= 30


def test_ring_cache_rolls_back_within_its_spare_slots_exactly():
    model = random_gemma("tiny-gemma3")  # window 8
    ids = torch.randint(0, 512, (1, 40), generator=torch.Generator().manual_seed(3))
    cache = KVCache.allocate(model.config, 1, 40, model.dtype, spare=5)
    assert any(cache.ring)
    with torch.no_grad():
        model(ids[:, :20], cache=cache)
        model(torch.randint(0, 512, (1, 5)), cache=cache)  # 5 drafts, all rejected
        cache.truncate(20)
        got = model(ids[:, 20:40], cache=cache)
        want = model(ids)[:, 20:]
        assert (got - want).abs().max() <= 1e-4
        with pytest.raises(ValueError, match="5 spare slots cannot roll back from 40 to 34"):
            cache.truncate(34)


def test_ngram_index_drafts_what_transformers_prompt_lookup_drafts():
    """transformers' PromptLookupCandidateGenerator (scan of every window) is the oracle."""
    transformers = pytest.importorskip("transformers")
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    g = torch.Generator().manual_seed(0)
    for case in range(200):
        ids = torch.randint(0, 6, (1, int(torch.randint(2, 40, (1,), generator=g))), generator=g)
        k, ngram = case % 7 + 1, case % 4 + 1
        theirs = PromptLookupCandidateGenerator(num_output_tokens=k, max_matching_ngram_size=ngram, max_length=1000)
        want, _ = theirs.get_candidates(ids)
        want = want[0, ids.shape[1]:].tolist()
        assert NgramIndex(PromptLookup(k, ngram), ids[0].tolist()).draft(k) == want, (ids, k, ngram)
    assert transformers


def test_ngram_index_prefers_long_matches_and_cuts_drafts_at_stops_and_limits():
    index = NgramIndex(PromptLookup(num_tokens=4, max_ngram=2), [5, 6, 7, 8, 9, 1, 6, 7, 3, 5, 6])
    assert index.draft(10) == [7, 8, 9, 1]  # (5, 6) at 0, not (6,) alone
    assert index.draft(2) == [7, 8]
    assert index.draft(10, stop_ids={8}) == [7, 8]
    assert index.draft(0) == []
    assert NgramIndex(PromptLookup(), [1, 2, 3]).draft(5) == []  # nothing earlier matches


def test_bad_settings_are_clear_errors():
    model = random_gemma("tiny-gemma3", std=0.1)
    with pytest.raises(gf.InputError, match="one prompt at a time, got 2"):
        Decoder(model, [[2, 5], [2, 6]], 4, speculative="prompt-lookup")
    with pytest.raises(gf.InputError, match="speculative must be one of 'prompt-lookup'"):
        gf.generate(model, ByteTokenizer(), ["ab"], 4, speculative="medusa")
    with pytest.raises(gf.InputError, match="num_tokens must be >= 1"):
        PromptLookup(num_tokens=0)
    with pytest.raises(gf.InputError, match="min_ngram <= max_ngram"):
        PromptLookup(max_ngram=2, min_ngram=3)


@pytest.mark.real
def test_real_gemma3_greedy_is_identical_across_the_512_token_window():
    """gemma3-270m editing a text it was given: the output repeats the input, so most drafts hold;
    a long prompt puts generation across the 512-token ring of the sliding-window layers."""
    model, tok = gf.load_model("gemma3-270m"), gf.load_tokenizer("gemma3-270m")
    text = ("The quick brown fox jumps over the lazy dog near the river bank. " * 40)[:2200]
    ids = tok.encode(f"Copy this text exactly:\n{text}\nCopy:\n")
    assert len(ids) < 512 < len(ids) + 48
    plain, _ = run(model, ids, 48, stop_ids=[tok.eos_id, tok.end_of_turn_id])
    spec, dec = run(model, ids, 48, stop_ids=[tok.eos_id, tok.end_of_turn_id], speculative="prompt-lookup")
    assert spec == plain and len(plain) == 48
    assert dec.stats.accepted > 0 and dec.stats.forwards < 24


def test_stats_count_every_accepted_draft_even_in_the_last_pass():
    """Every pass yields its accepted drafts plus one token of the model's own, but the last pass may
    end (at max_new_tokens) on an accepted draft; the prefill yields the first token."""
    model = random_gemma("tiny-gemma3", std=0.1)
    for seed in range(3):
        out, dec = run(model, repeating_prompt(seed, model.config.vocab_size), 17, speculative=PromptLookup(4))
        s = dec.stats
        assert s.tokens == len(out) == 17 and s.accepted > 0
        assert s.tokens - 1 - s.accepted in (s.forwards - 1, s.forwards)
