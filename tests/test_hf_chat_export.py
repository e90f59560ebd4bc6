"""An HF export chats in transformers exactly as `gemmaforge chat` does: same template, same
assistant mask (generation markers), same greedy reply, same stop at <end_of_turn>, true dtype."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import torch

import gemmaforge as gf
from gemmaforge.tokenizer.train import train_tokenizer

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")

CHAT = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": " Hello! How can I help?\n"},
        {"role": "user", "content": "Tell me a joke."}]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    corpus = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]
    return train_tokenizer(corpus, 1000, tmp_path_factory.mktemp("tok"), family=3)


def stopping_model(tok, prompt: list[int]) -> tuple[gf.Gemma, list[int]]:
    """A tiny random Gemma 3 whose greedy reply to `prompt` is a few tokens, then <end_of_turn>:
    the <end_of_turn> embedding row is tilted towards the reply's k-th token until it wins there."""
    for seed in range(20):
        torch.manual_seed(seed)
        model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3", vocab_size=tok.vocab_size)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.3)
        plain = gf.generate(model, tok, [prompt], 8)
        ids = tok.encode(plain[0], add_bos=False)
        if len(ids) < 4:
            continue
        with torch.no_grad():
            row = model.embed.weight[tok.end_of_turn_id].clone()
            for mix in (0.5, 0.8, 1.0, 1.5, 2.0, 3.0):
                model.embed.weight[tok.end_of_turn_id] = row + mix * model.embed.weight[ids[2]]
                dec = gf.inference.Decoder(model, [prompt], 12, stop_ids=[tok.end_of_turn_id])
                out = [t for (t,) in dec if t is not None]
                if len(out) >= 2 and out[-1] == tok.end_of_turn_id:
                    return model, out
    pytest.fail("no tiny model stops within 12 tokens")


def test_export_is_chat_ready_in_transformers(tok, tmp_path):
    prompt = tok.encode(tok.apply_chat_template(CHAT))
    model, reply = stopping_model(tok, prompt)
    out = gf.export_hf(model.to(torch.bfloat16).float(), tmp_path / "hf", tokenizer=tok)

    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False) == tok.apply_chat_template(CHAT)
    # The {% generation %} markers give TRL's assistant-only mask: exactly our SFT loss mask.
    done = CHAT + [{"role": "assistant", "content": "Why not?"}]
    enc = hf_tok.apply_chat_template(done, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = tok.render_chat(done)
    assert enc["input_ids"] == ids and enc["assistant_masks"] == mask

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    gen = hf.generate(torch.tensor([prompt]), max_new_tokens=12)[0, len(prompt):].tolist()
    assert gen == reply  # same greedy tokens, and transformers stops at <end_of_turn> too
    session = gf.ChatSession(model, tok, max_new_tokens=12)
    for m in CHAT[:-1]:
        session.messages.append({"role": "model" if m["role"] == "assistant" else m["role"], "content": m["content"]})
    assert "".join(session.send(CHAT[-1]["content"])) == tok.decode(reply[:-1])  # the same reply, same stop


def test_export_declares_its_true_dtype_and_stop_ids(tok, tmp_path):
    model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3", vocab_size=tok.vocab_size)).to(torch.bfloat16)
    out = gf.export_hf(model, tmp_path / "bf16", tokenizer=tok)
    config = json.loads((out / "config.json").read_text())
    generation = json.loads((out / "generation_config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"
    assert config["eos_token_id"] == generation["eos_token_id"] == [tok.eos_id, tok.end_of_turn_id]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert loaded.dtype == torch.bfloat16
