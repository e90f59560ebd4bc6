"""The chat template's rules and the SFT loss mask (on small trained tokenizers: fast)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from gemmaforge.errors import InputError
from gemmaforge.tokenizer import Tokenizer
from gemmaforge.tokenizer.train import train_tokenizer

U1 = {"role": "user", "content": "Hi there"}
M1 = {"role": "assistant", "content": "Hello! How can I help?"}
U2 = {"role": "user", "content": "Tell me a joke."}
SYS = {"role": "system", "content": "Be brief."}


@pytest.fixture(scope="module")
def corpus() -> list[Path]:
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]


@pytest.fixture(scope="module")
def tok3(corpus, tmp_path_factory) -> Tokenizer:
    return train_tokenizer(corpus, 1000, tmp_path_factory.mktemp("g3"), family=3)


@pytest.fixture(scope="module")
def tok1(corpus, tmp_path_factory) -> Tokenizer:
    return train_tokenizer(corpus, 1000, tmp_path_factory.mktemp("g1"), family=1)


def test_exact_rendering(tok3):
    assert tok3.apply_chat_template([U1, M1, U2]) == (
        "<bos><start_of_turn>user\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nTell me a joke.<end_of_turn>\n"
        "<start_of_turn>model\n")
    assert tok3.apply_chat_template([U1, M1], add_generation_prompt=False) == (
        "<bos><start_of_turn>user\nHi there<end_of_turn>\n"
        "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n")


def test_model_and_assistant_render_alike_and_contents_are_stripped(tok3):
    a = tok3.apply_chat_template([{"role": "user", "content": "\n  Hi there \t"}, M1])
    b = tok3.apply_chat_template([U1, {"role": "model", "content": M1["content"] + "\n\n"}])
    assert a == b == tok3.apply_chat_template([U1, M1])


def test_one_bos(tok3):
    text = tok3.apply_chat_template([U1])
    ids = tok3.encode(text)
    assert ids == tok3.encode(text, add_bos=False) and ids.count(tok3.bos_id) == 1 and ids[0] == tok3.bos_id


@pytest.mark.parametrize("messages, index, expected", [
    ([M1], 0, "user"),
    ([U1, U2], 1, "model"),
    ([U1, M1, M1], 2, "user"),
    ([SYS, M1], 1, "user"),
])
def test_roles_must_alternate(tok3, messages, index, expected):
    with pytest.raises(InputError, match=rf"message {index}: expected a '{expected}' turn"):
        tok3.apply_chat_template(messages)


def test_bad_messages(tok3):
    with pytest.raises(InputError, match="message 1: unknown role 'tool'"):
        tok3.apply_chat_template([U1, {"role": "tool", "content": "x"}])
    with pytest.raises(InputError, match="message 2: a system message may only come first"):
        tok3.apply_chat_template([U1, M1, SYS])
    with pytest.raises(InputError, match="message 0: a system message must be followed by a user message"):
        tok3.apply_chat_template([SYS])
    with pytest.raises(InputError, match="message 1: content must be a string"):
        tok3.apply_chat_template([U1, {"role": "model", "content": [{"type": "text", "text": "x"}]}])
    with pytest.raises(InputError, match="message 0: expected a dict"):
        tok3.apply_chat_template(["hello"])
    with pytest.raises(InputError, match="empty conversation"):
        tok3.apply_chat_template([])
    with pytest.raises(InputError, match="system must be 'fold' or 'refuse'"):
        tok3.apply_chat_template([U1], system="merge")


def test_gemma3_folds_system_into_first_user_turn(tok3):
    assert tok3.apply_chat_template([SYS, U1, M1, U2]) == tok3.apply_chat_template(
        [{"role": "user", "content": "Be brief.\n\nHi there"}, M1, U2])
    with pytest.raises(InputError, match="message 0: Gemma 3 has no system role"):
        tok3.apply_chat_template([SYS, U1], system="refuse")


def test_gemma1_refuses_system_unless_folding(tok1):
    assert tok1.family == 1 and (tok1.start_of_turn_id, tok1.end_of_turn_id) == (106, 107)
    with pytest.raises(InputError, match="message 0: Gemma 1 has no system role; pass system='fold'"):
        tok1.apply_chat_template([SYS, U1])
    assert tok1.apply_chat_template([SYS, U1], system="fold") == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n")


def test_render_chat_ids_and_loss_mask(tok3):
    messages = [SYS, U1, M1, U2, {"role": "assistant", "content": "Why did the chicken cross the road?"}]
    ids, mask = tok3.render_chat(messages)
    assert ids == tok3.encode(tok3.apply_chat_template(messages, add_generation_prompt=False))
    assert len(mask) == len(ids) and set(mask) == {0, 1}
    trained = tok3.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "Hello! How can I help?<end_of_turn>Why did the chicken cross the road?<end_of_turn>"
    assert mask[-1] == 0 and ids[-1] == tok3.encode("\n", add_bos=False)[0]  # newline after the turn
    # each model turn's mask starts right after its "<start_of_turn>model\n" header
    header = tok3.encode("<start_of_turn>model\n", add_bos=False)
    first = mask.index(1)
    assert ids[first - len(header):first] == header


def test_render_chat_with_generation_prompt_trains_on_nothing_new(tok3):
    ids, mask = tok3.render_chat([U1], add_generation_prompt=True)
    assert ids == tok3.encode(tok3.apply_chat_template([U1])) and not any(mask)
