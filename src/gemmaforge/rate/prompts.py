"""Prompts to rate: plain text or chat conversations, read from .txt or .jsonl files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..util.jsonl import read_jsonl
from .errors import RateError

ROLES = ("system", "user", "assistant", "model")


@dataclass(frozen=True)
class Prompt:
    """`text` is what raters read; `messages` (JSON chat turns) is set for chat prompts, which are
    generated through the model's chat template."""

    text: str
    messages: str | None = None

    @property
    def key(self) -> str:
        """One identity per prompt, so importing or generating twice never duplicates it."""
        body = self.messages if self.messages is not None else json.dumps(self.text)
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def turns(self) -> list[dict] | None:
        return None if self.messages is None else json.loads(self.messages)


def chat_prompt(messages: object, where: str) -> Prompt:
    """A chat prompt from a list of {"role", "content"} turns ending with the user's turn."""
    if not isinstance(messages, list) or not messages:
        raise RateError(f"{where}: 'messages' must be a non-empty list of {{role, content}} turns")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
            raise RateError(f"{where}: message {i} must be {{\"role\": one of {ROLES}, \"content\": text}}")
    if messages[-1]["role"] != "user":
        raise RateError(f"{where}: the last message must be the user's (the models answer it)")
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    return Prompt(messages[-1]["content"], json.dumps(turns, ensure_ascii=False))


def prompt_from_record(record: dict, where: str, chat: bool = False) -> Prompt:
    """{"prompt": text} or {"messages": [...]}; with `chat`, a plain prompt becomes one user turn."""
    if "messages" in record:
        return chat_prompt(record["messages"], where)
    text = record.get("prompt")
    if isinstance(text, list):  # TRL's conversational preference format
        return chat_prompt(text, where)
    if not isinstance(text, str) or not text.strip():
        raise RateError(f"{where}: missing field 'prompt' (a non-empty string) or 'messages'")
    return chat_prompt([{"role": "user", "content": text}], where) if chat else Prompt(text)


def read_prompts(path: str | Path, chat: bool = False) -> list[Prompt]:
    """Prompts from a .jsonl file (one record a line) or any other text file (one prompt a line)."""
    path = Path(path)
    if path.suffix in (".jsonl", ".gz"):
        prompts = [prompt_from_record(r, f"{path}:{n}", chat) for n, r in read_jsonl(path, RateError)]
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RateError(f"{path}: cannot read prompts: {getattr(e, 'strerror', None) or e}") from None
        prompts = [prompt_from_record({"prompt": line}, f"{path}:{n}", chat)
                   for n, line in enumerate(lines, 1) if line.strip()]
    if not prompts:
        raise RateError(f"{path}: no prompts")
    return list(dict.fromkeys(prompts))  # repeated prompts are rated once
