"""The generation engine on tiny random models: cache, batching, sampling, stops, limits."""

import sys

import pytest
import torch
from byte_tokenizer import ByteTokenizer
from model_helpers import random_gemma

import gemmaforge as gf
from gemmaforge.inference.generate import Decoder, TextStream, fit_context, generate, stream
from gemmaforge.inference.sampling import Sampling, filter_logits
from gemmaforge.kv_cache import PromptCache


def run(model, prompts, n, **kw):
    rows = [[] for _ in prompts]
    for step in Decoder(model, prompts, n, **kw):
        for r, t in enumerate(step):
            if t is not None:
                rows[r].append(t)
    return rows


def test_greedy_decode_equals_argmax_of_full_forward(tiny_name):
    model = random_gemma(tiny_name, std=0.1)
    prompt = [2, 17, 99, 5, 300, 41, 7, 8, 9, 10]
    out = run(model, [prompt], 20)[0]  # 30 positions: the window of 8 wraps several times
    seq = prompt[:]
    with torch.no_grad():
        for tok in out:
            assert tok == model(torch.tensor([seq]))[0, -1].argmax().item()
            seq.append(tok)


@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.8, top_k=50, seed=3)])
def test_batch_of_different_lengths_equals_each_prompt_alone(tiny_name, sampling):
    model = random_gemma(tiny_name, std=0.1)
    prompts = [[2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [2, 40], [2, 77, 78, 79, 80]]
    batched = run(model, prompts, 12, sampling=sampling)
    for i, (p, got) in enumerate(zip(prompts, batched)):  # row i is sample (seed, i)
        assert got == run(model, [p], 12, sampling=sampling, sample_ids=[i])[0]


def test_copies_of_one_prompt_give_independent_reproducible_samples():
    model = random_gemma("tiny-gemma3", std=0.02)  # near-uniform next-token distributions
    tok = ByteTokenizer()
    sampling = Sampling(temperature=1.0, seed=7)
    texts = generate(model, tok, ["ab"] * 6, 12, sampling=sampling)
    assert len(set(texts)) == 6  # each row has its own random stream
    for k in (0, 4):  # sample k of the batch is (seed, k) generated alone, through both entry points
        assert generate(model, tok, ["ab"], 12, sampling=sampling, sample_ids=[k]) == [texts[k]]
        assert "".join(stream(model, tok, "ab", 12, sampling=sampling, sample_id=k)) == texts[k]
    assert generate(model, tok, ["ab"] * 6, 12, sampling=sampling) == texts
    with pytest.raises(gf.InputError, match="not both"):
        generate(model, tok, ["ab"], 4, temperature=0.5, sampling=sampling)


def test_sample_seeds_are_distinct_and_stable():
    from gemmaforge.inference.sampling import sample_seed

    seeds = {sample_seed(s, i) for s in range(50) for i in range(50)}
    assert len(seeds) == 2500 and all(0 <= x < 2**63 for x in seeds)
    assert sample_seed(0, 0) == sample_seed(0, 0) != sample_seed(0, 1)


def test_sampling_is_seeded():
    model = random_gemma("tiny-gemma3", std=0.05)
    s = dict(temperature=1.0)
    a = run(model, [[2, 3, 4]], 15, sampling=Sampling(**s, seed=1))
    assert a == run(model, [[2, 3, 4]], 15, sampling=Sampling(**s, seed=1))
    assert a != run(model, [[2, 3, 4]], 15, sampling=Sampling(**s, seed=2))


def test_top_k_1_and_tiny_top_p_are_greedy():
    model = random_gemma("tiny-gemma2", std=0.1)
    greedy = run(model, [[2, 9, 9]], 10)
    assert run(model, [[2, 9, 9]], 10, sampling=Sampling(temperature=1.5, top_k=1, seed=4)) == greedy
    assert run(model, [[2, 9, 9]], 10, sampling=Sampling(temperature=1.5, top_p=1e-6, seed=4)) == greedy


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, None, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, 2, None)).sum() == 2


def nucleus_float64(logits: torch.Tensor, p: float) -> set[int]:
    """Reference: the smallest set of top tokens whose float64 probability reaches p."""
    probs = torch.softmax(logits.double(), -1)
    order = torch.argsort(probs, descending=True, stable=True).tolist()
    kept, mass = set(), 0.0
    for t in order:
        if mass >= p:
            break
        kept.add(t)
        mass += probs[t].item()
    return kept


@pytest.mark.parametrize("p", [0.5, 0.9, 0.999])
def test_top_p_over_a_262k_vocabulary_keeps_the_float64_nucleus(p):
    torch.manual_seed(0)  # a long-tailed distribution at Gemma 3's vocabulary size
    logits = torch.randn(262144) * 3.0 + torch.linspace(8, 0, 262144) ** 1.5
    kept = torch.isfinite(filter_logits(logits[None], None, p))[0].nonzero()[:, 0].tolist()
    assert set(kept) == nucleus_float64(logits, p)


def test_repetition_penalty_discourages_repeats():
    model = random_gemma("tiny-gemma-mqa", std=0.3)
    plain = run(model, [[2, 5]], 30)[0]
    penalised = run(model, [[2, 5]], 30, sampling=Sampling(repetition_penalty=5.0))[0]
    assert len(set(penalised)) > len(set(plain))


def test_stops_on_stop_ids_and_max_new_tokens():
    model = random_gemma("tiny-gemma3", std=0.1)
    free = run(model, [[2, 11, 12]], 12)[0]
    stop = free[4]
    first = free.index(stop)
    assert run(model, [[2, 11, 12]], 12, stop_ids=[stop])[0] == free[:first + 1]
    assert len(run(model, [[2, 11, 12]], 3)[0]) == 3
    assert run(model, [[2, 11, 12]], 0)[0] == []


def test_over_long_prompt_is_a_clear_error_or_truncated_explicitly():
    model = random_gemma("tiny-gemma-mqa")  # context 256
    long = [2] + list(range(10, 260))
    with pytest.raises(gf.InputError, match="prompt 0 is 251 tokens.*context is 256.*truncate"):
        Decoder(model, [long], 10)
    dec = Decoder(model, [long], 10, truncate=True)
    assert dec.prompts[0][0] == 2 and len(dec.prompts[0]) == 246 and dec.prompts[0][-1] == 259
    with pytest.raises(gf.InputError, match="empty"):
        Decoder(model, [[]], 4)


def test_text_stream_never_splits_a_utf8_character():
    tok = ByteTokenizer()
    text = "naïve café — 日本語 👩‍👩‍👧 ok"
    ts = TextStream(tok)
    deltas = [ts.push(i) for i in tok.encode(text, add_bos=False)]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert sum(1 for d in deltas if d) < len(text.encode())  # multi-byte chars came out whole


def test_stop_strings_cut_the_text():
    tok = ByteTokenizer()
    ts = TextStream(tok, stop=["\n\n"])
    out = "".join(ts.push(i) for i in tok.encode("first line\n\nsecond", add_bos=False) if not ts.stopped)
    assert out == "first line" and ts.stopped


def test_generate_and_stream_agree():
    model = random_gemma("tiny-gemma3", std=0.1)
    tok = ByteTokenizer()
    texts = generate(model, tok, ["ab", "hello there"], max_new_tokens=16)
    assert texts[1] == "".join(stream(model, tok, "hello there", max_new_tokens=16))
    with pytest.raises(gf.InputError, match="list of prompts"):
        generate(model, tok, "ab")


def count_prefill(model):
    """Tokens in each forward pass of `model`, recorded in a list."""
    sizes = []
    model.register_forward_pre_hook(lambda m, args, kwargs: sizes.append((args or [kwargs["input_ids"]])[0].shape[1]),
                                    with_kwargs=True)
    return sizes


def test_prompt_cache_prefills_only_what_is_new_and_decodes_as_fresh(tiny_name):
    model = random_gemma(tiny_name, std=0.1)
    sizes = count_prefill(model)
    cache = PromptCache()
    turn1 = [2, 17, 99, 5, 300, 41, 7, 8, 9, 10]  # longer than tiny-gemma3's window of 8
    out1 = run(model, [turn1], 12, prompt_cache=cache)[0]
    assert cache.tokens == turn1 + out1[:-1]  # the last sampled token was never fed
    turn2 = turn1 + out1 + [5, 6, 7]  # the next turn: the history, the reply, new text
    sizes.clear()
    out2 = run(model, [turn2], 10, prompt_cache=cache)[0]
    assert sizes[0] == 4 and cache.cache.max_len >= len(turn2) + 10  # the cache grew past its first size
    turn3 = turn2[:12] + [400, 401]  # diverges inside the first reply: roll back to 12 tokens
    sizes.clear()
    out3 = run(model, [turn3], 10, prompt_cache=cache)[0]
    assert sizes[0] == 2
    assert run(model, [turn1], 12) == [out1] and run(model, [turn2], 10) == [out2]
    assert run(model, [turn3], 10) == [out3]
    with pytest.raises(gf.InputError, match="one prompt at a time"):
        Decoder(model, [turn1, turn2], 4, prompt_cache=cache)


class ChatBytes(ByteTokenizer):
    def apply_chat_template(self, messages, add_generation_prompt=False, system=None):
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<model>" if add_generation_prompt else "")


def test_chat_session_replies_equal_a_fresh_prefill_of_the_whole_history():
    model = random_gemma("tiny-gemma3", std=0.1)
    tok = ChatBytes()
    session = gf.ChatSession(model, tok, Sampling(temperature=0.9, seed=5), max_new_tokens=6)
    sizes = count_prefill(model)
    for text in ["hi", "tell me more", "ok"]:
        prompt = tok.encode(tok.apply_chat_template(session.messages + [{"role": "user", "content": text}],
                                                    add_generation_prompt=True))
        fresh = "".join(stream(model, tok, prompt, 6, temperature=0.9, seed=5))
        sizes.clear()
        assert "".join(session.send(text)) == fresh
        assert sizes[0] < len(prompt) or not session.messages[:-2]  # after the first turn, only the new part
    session.reset()
    sizes.clear()
    "".join(session.send("hi"))
    assert session.cache.tokens[:1] == [2] and len(session.messages) == 2


def test_chat_drops_the_oldest_exchanges_to_fit_the_context():
    model = random_gemma("tiny-gemma3", std=0.1)
    model.config = model.config.replace(max_seq_len=64)
    session = gf.ChatSession(model, ChatBytes(), max_new_tokens=6)
    for i in range(4):
        reply = "".join(session.send(f"message number {i}"))  # ~26 bytes a turn with its reply
        assert isinstance(reply, str)
    assert session.dropped >= 1 and len(session.messages) < 8
    assert session.messages[-2]["content"] == "message number 3"
    history = [dict(m) for m in session.messages]
    with pytest.raises(gf.InputError, match="context is 64.*conversation so far is kept"):
        "".join(session.send("x" * 80))  # too long on its own: an error, the history untouched
    assert session.messages == history and session.dropped == 0
    fresh = "".join(stream(model, session.tokenizer, session._render(history, "ok"), 6))
    assert "".join(session.send("ok")) == fresh  # the next reply still sees the history
    assert session.messages[:len(history)] == history


def test_truncation_that_cannot_help_says_what_would():
    with pytest.raises(gf.InputError, match="max_new_tokens=63 leaves no room for prompt 0 .* lower max_new_tokens"):
        fit_context([2] * 10, 63, 64, truncate=True)
    with pytest.raises(gf.InputError, match="temperature must be a finite number"):
        Sampling(temperature=float("nan"))


def test_prompts_prefill_in_chunks_exactly_as_in_one_pass(tiny_name, monkeypatch):
    """Chunks of 3 tokens through left-padded rows and sliding windows give the same tokens."""
    model = random_gemma(tiny_name, std=0.1)
    prompts = [[2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], [2, 40], [2, 77, 78, 79, 80]]
    whole = run(model, prompts, 8)
    monkeypatch.setattr(sys.modules["gemmaforge.inference.generate"], "PREFILL_CHUNK", 3)
    sizes = count_prefill(model)
    assert run(model, prompts, 8) == whole
    assert sizes[:6] == [3, 3, 3, 3, 1, 1]  # 13 prompt positions in chunks, then decoding
    cache = PromptCache()
    assert run(model, [prompts[0]], 8, prompt_cache=cache) == whole[:1]
