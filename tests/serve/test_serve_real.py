"""The server over the real Gemma 3 270M: the official client's chat reply is gf.generate's text,
and concurrent requests in one batch each get their solo greedy reply."""

from __future__ import annotations

import concurrent.futures

import pytest
from serve_helpers import NAME, serving

import gemmaforge as gf

pytestmark = pytest.mark.real
openai = pytest.importorskip("openai")

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,"]


def test_real_model_served_in_one_batch_equals_generate():
    model, tok = gf.load_model("gemma3-270m"), gf.load_tokenizer("gemma3-270m")
    expected = gf.generate(model, tok, PROMPTS, max_new_tokens=12)
    with serving(model, tok, max_batch=4, context=512) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="-", max_retries=0)

        def ask(p):
            return client.completions.create(model=NAME, prompt=p, max_tokens=12, temperature=0).choices[0].text

        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
            assert list(pool.map(ask, PROMPTS)) == expected
        chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi!"}],
                                              max_tokens=8, temperature=0)
        prompt = tok.apply_chat_template([{"role": "user", "content": "Hi!"}])
        assert chat.choices[0].message.content == gf.generate(model, tok, [prompt], max_new_tokens=8)[0]
