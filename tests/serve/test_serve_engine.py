"""The continuous-batching engine, driven step by step on tiny random Gemmas (no HTTP)."""

from __future__ import annotations

import time

import pytest
import torch
from byte_tokenizer import ByteTokenizer
from model_helpers import random_gemma

import gemmaforge as gf
from gemmaforge.inference.generate import Decoder
from gemmaforge.inference.sampling import Sampling
from gemmaforge.serve.engine import Engine, FinishEvent, Params, QueueFull, Sequence, TokenEvent

TOK = ByteTokenizer()
PROMPTS = ["a", "The quick brown fox jumps", "0123456789" * 4, "hello there", "x y z", "[{(<>)}]" * 3]


class Collect:
    """A sink: the tokens, text and finish reason one sequence received."""

    def __init__(self):
        self.tokens, self.text, self.finish = [], "", None

    def __call__(self, ev):
        if isinstance(ev, FinishEvent):
            self.finish = ev
        elif isinstance(ev, TokenEvent):
            self.text += ev.text
            if ev.token is not None:
                self.tokens.append(ev.token)


def seq(prompt: str, max_tokens: int, **kw) -> tuple[Sequence, Collect]:
    sink = Collect()
    return Sequence(TOK.encode(prompt), Params(max_tokens, **kw), sink), sink


def drain(engine: Engine, limit: int = 10_000) -> None:
    with torch.inference_mode():
        for _ in range(limit):
            if not engine.step() and not engine.waiting:
                return
    raise AssertionError("the engine did not go idle")


@pytest.fixture(scope="module")
def model():
    return random_gemma("tiny-gemma3", std=0.1)  # sliding window 8: prompts and replies wrap it


def alone(model, prompt: str, n: int, sampling: Sampling) -> list[int]:
    rows = Decoder(model, [TOK.encode(prompt)], n, sampling)  # no stop ids: exactly n tokens
    return [step[0] for step in rows]


@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.9, top_p=0.95, seed=7)])
def test_each_sequence_decodes_as_it_would_alone(model, sampling):
    """Sequences join a running batch at different steps, prefill in chunks across the sliding
    window, share rows with others at other positions: each gets exactly its solo tokens."""
    engine = Engine(model, TOK, max_batch=4, context=128, max_queue=16, prefill_chunk=5)
    lengths = [30, 7, 19, 25, 12, 40]
    seqs = [seq(p, n, sampling=sampling, ignore_eos=True) for p, n in zip(PROMPTS, lengths)]
    engine.submit([s for s, _ in seqs[:2]])
    with torch.inference_mode():
        for _ in range(6):  # the first two are decoding when the others arrive
            engine.step()
    engine.submit([s for s, _ in seqs[2:]])  # 6 sequences, 4 rows: two wait for rows to free up
    drain(engine)
    for (_, got), prompt, n in zip(seqs, PROMPTS, lengths):
        assert got.tokens == alone(model, prompt, n, sampling), prompt
        assert got.finish.reason == "length" and got.finish.completion_tokens == n
    assert engine.active == 0


def test_greedy_text_equals_gf_generate(model):
    """Stop ids (EOS, <end_of_turn>) and max_tokens end sequences as gf.generate does."""
    engine = Engine(model, TOK, max_batch=6, context=128, prefill_chunk=4)
    seqs = [seq(p, 24) for p in PROMPTS]
    engine.submit([s for s, _ in seqs])
    drain(engine)
    expected = gf.generate(model, TOK, PROMPTS, max_new_tokens=24)
    assert [got.text for _, got in seqs] == expected


def test_stop_strings_end_the_text(model):
    free = gf.generate(model, TOK, ["hello there"], max_new_tokens=30)[0]
    stop = free[5:7]
    engine = Engine(model, TOK, max_batch=2, context=128)
    s, got = seq("hello there", 30, stop=(stop,))
    engine.submit([s])
    drain(engine)
    assert got.text == free[:free.index(stop)] and got.finish.reason == "stop"


def test_a_long_prompt_does_not_freeze_running_streams(model):
    engine = Engine(model, TOK, max_batch=2, context=256, prefill_chunk=16)
    short, short_got = seq("a", 200, ignore_eos=True)
    engine.submit([short])
    with torch.inference_mode():
        engine.step()
        engine.step()
        long, long_got = seq("z" * 200, 5, ignore_eos=True)  # 201 tokens: 13 chunks of 16
        engine.submit([long])
        before = len(short_got.tokens)
        while not long_got.tokens:
            engine.step()
    assert len(short_got.tokens) - before >= 12  # one token per chunk, at least


def test_cancel_frees_the_row_at_the_next_step(model):
    engine = Engine(model, TOK, max_batch=2, context=256)
    s, got = seq("abc", 200, ignore_eos=True)
    engine.submit([s])
    with torch.inference_mode():
        for _ in range(3):
            engine.step()
        assert engine.active == 1
        engine.cancel([s])
        engine.step()
    assert engine.active == 0 and len(got.tokens) == 3 and got.finish is None


def test_queue_is_bounded_and_all_or_nothing(model):
    engine = Engine(model, TOK, max_batch=1, context=64, max_queue=3)
    engine.submit([seq("a", 2)[0], seq("b", 2)[0]])
    with pytest.raises(QueueFull):
        engine.submit([seq("c", 2)[0], seq("d", 2)[0]])
    assert len(engine.waiting) == 2
    engine.cancel([engine.waiting[0]])
    assert len(engine.waiting) == 1


def wait_for(cond, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_a_failing_step_fails_its_batch_and_the_engine_keeps_serving(model, monkeypatch):
    engine = Engine(model, TOK, max_batch=2, context=64)
    real = engine._prefill_chunk
    monkeypatch.setattr(engine, "_prefill_chunk", lambda s, budget: (_ for _ in ()).throw(RuntimeError("boom")))
    bad, bad_got = seq("abc", 5)
    engine.submit([bad])
    engine.start()
    try:
        wait_for(lambda: bad_got.finish is not None)
        assert bad_got.finish.reason == "error" and engine.active == 0
        monkeypatch.setattr(engine, "_prefill_chunk", real)
        ok, ok_got = seq("abc", 5)
        engine.submit([ok])
        wait_for(lambda: ok_got.finish is not None)
        assert ok_got.finish.reason in ("stop", "length") and ok_got.tokens
    finally:
        engine.stop()
