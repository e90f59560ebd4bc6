r"""Gemma's chat template, as the instruction-tuned models were trained on it.

    <bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n{content}<end_of_turn>\n...

This is the official Hugging Face template of Gemma 1/2 ("gemma-*-it") and Gemma 3 written out in
Python: contents are stripped (Jinja's `trim`), "assistant" is rendered "model", turns alternate
user/model starting with user. Gemma 1/2 have no system role; Gemma 3 puts the system message in
front of the first user turn as "{system}\n\n{user}" (the system text itself is not stripped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..errors import InputError


class _OffsetEncoder(Protocol):
    """What rendering ids needs of a tokenizer (the template knows no tokenizer class)."""

    family: int

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]: ...

_ROLES = {"user": "user", "model": "model", "assistant": "model"}


def render_text(messages: Sequence[Mapping], family: int, add_generation_prompt: bool = True,
                system: str | None = None) -> str:
    """The rendered conversation, starting with "<bos>"."""
    return "".join(text for text, _ in _parts(messages, family, add_generation_prompt, system))


def render_ids(tok: _OffsetEncoder, messages: Sequence[Mapping], add_generation_prompt: bool = False,
               system: str | None = None) -> tuple[list[int], list[int]]:
    r"""(ids, loss_mask) of the rendered conversation. A token is trained on (mask 1) when it starts
    inside a model turn's content or its closing <end_of_turn>; the "<start_of_turn>model\n" header,
    the newline after <end_of_turn> and user turns are context (mask 0). The ids are exactly
    `tok.encode(render_text(...))`: the whole string is encoded at once and split by offsets."""
    parts = _parts(messages, tok.family, add_generation_prompt, system)
    text = "".join(t for t, _ in parts)
    trained = bytearray(len(text))
    pos = 0
    for t, is_model in parts:
        if is_model:
            trained[pos:pos + len(t)] = b"\x01" * len(t)
        pos += len(t)
    ids, starts = tok.encode_with_offsets(text)
    return ids, [trained[s] for s in starts]


def _parts(messages: Sequence[Mapping], family: int, add_generation_prompt: bool,
           system: str | None) -> list[tuple[str, bool]]:
    """The rendered text as (text, is_model_output) parts."""
    if system not in (None, "fold", "refuse"):
        raise InputError(f"system must be 'fold' or 'refuse', got {system!r}")
    if not messages:
        raise InputError("cannot render an empty conversation")
    turns = [(i, *_role_content(i, m)) for i, m in enumerate(messages)]
    prefix = ""
    if turns[0][1] == "system":
        mode = system or ("fold" if family == 3 else "refuse")
        if mode == "refuse":
            raise InputError(f"message 0: Gemma {family} has no system role; pass system='fold' to put it "
                             "in front of the first user turn")
        if len(turns) == 1:
            raise InputError("message 0: a system message must be followed by a user message")
        prefix = turns[0][2] + "\n\n"
        turns = turns[1:]
    parts: list[tuple[str, bool]] = [("<bos>", False)]
    for j, (i, role, content) in enumerate(turns):
        expected = "user" if j % 2 == 0 else "model"
        if role != expected:
            raise InputError(f"message {i}: expected a {expected!r} turn, got role {messages[i]['role']!r}; "
                             "roles must alternate user/model starting with user")
        content = content.strip()
        if role == "user":
            parts.append((f"<start_of_turn>user\n{prefix if j == 0 else ''}{content}<end_of_turn>\n", False))
        else:
            parts += [("<start_of_turn>model\n", False), (content + "<end_of_turn>", True), ("\n", False)]
    if add_generation_prompt:
        parts.append(("<start_of_turn>model\n", False))
    return parts


def _role_content(i: int, message: Mapping) -> tuple[str, str]:
    if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
        raise InputError(f"message {i}: expected a dict with 'role' and 'content', got {message!r}")
    role, content = message["role"], message["content"]
    if not isinstance(content, str):
        raise InputError(f"message {i}: content must be a string, got {type(content).__name__}")
    if role == "system":
        if i == 0:
            return role, content
        raise InputError(f"message {i}: a system message may only come first")
    if role not in _ROLES:
        raise InputError(f"message {i}: unknown role {role!r}; expected 'system', 'user', 'model' or 'assistant'")
    return _ROLES[role], content


def jinja_template(family: int) -> str:
    """This template as Jinja, for Hugging Face's `tokenizer_config.json`: it renders exactly what
    `render_text` does, and marks each model turn's content and `<end_of_turn>` with
    `{% generation %}` so transformers' assistant masks (TRL's assistant-only loss) equal our
    loss mask. Gemma 3 folds a system message into the first user turn; Gemma 1/2 refuse it."""
    if family == 3:
        system = ("{%- if messages[0]['role'] == 'system' -%}"
                  "{%- set prefix = messages[0]['content'] + '\\n\\n' -%}{%- set turns = messages[1:] -%}"
                  "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}")
    else:
        system = ("{%- if messages[0]['role'] == 'system' -%}"
                  "{{ raise_exception('Gemma " + str(family) + " has no system role') }}{%- endif -%}"
                  "{%- set prefix = '' -%}{%- set turns = messages -%}")
    return (
        "{{ bos_token }}" + system +
        "{%- for message in turns -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{%- if role not in ['user', 'model'] -%}"
        "{{ raise_exception('unknown role ' + message['role']) }}{%- endif -%}"
        "{%- if (role == 'user') != (loop.index0 % 2 == 0) -%}"
        "{{ raise_exception('roles must alternate user/model starting with user') }}{%- endif -%}"
        "{%- if role == 'user' -%}"
        "{{ '<start_of_turn>user\\n' + (prefix if loop.first else '') + message['content'] | trim"
        " + '<end_of_turn>\\n' }}"
        "{%- else -%}"
        "{{ '<start_of_turn>model\\n' }}{% generation %}{{ message['content'] | trim + '<end_of_turn>' }}"
        "{% endgeneration %}{{ '\\n' }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
    )
