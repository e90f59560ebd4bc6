"""Prompts for `sft select`: one JSON object per line, in any of the shapes users have.

    {"prompt": "..."}                                   a single user turn
    {"messages": [{"role": ..., "content": ...}, ...]}  a conversation ending with a user turn
    {"input": [...]}                                    the same, as the OpenAI `evals` registry writes it
    {"input": "...", "target": "..."}                   a natural-instructions example (target = reference)
  optional: "id", "reference", "ideal" or "target" (a known good answer; a list counts by its first entry),
            "responses": {"name": "text", ...} (answers already made, usable as candidates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..util.jsonl import read_jsonl

ROLES = ("system", "user", "assistant", "model")


@dataclass(frozen=True)
class PromptRecord:
    id: str
    messages: tuple[dict, ...]  # the conversation to answer; the last turn is the user's
    reference: str | None = None
    responses: Mapping[str, str] = field(default_factory=dict)
    where: str = ""  # file:line, for messages

    @property
    def question(self) -> str:
        """The conversation as the judge reads it: the user's text, or a transcript when it is longer."""
        turns = [m for m in self.messages if m["role"] != "system"]
        system = [m["content"] for m in self.messages if m["role"] == "system"]
        if len(turns) == 1:
            return "\n\n".join([*system, turns[0]["content"]])
        lines = [f"System: {s}" for s in system]
        lines += [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in turns]
        return "\n\n".join(lines)


def read_prompts(path: str | Path, limit: int | None = None) -> list[PromptRecord]:
    """Every record of `path` (or its first `limit`), checked; InputError names file:line."""
    records: list[PromptRecord] = []
    seen: dict[str, str] = {}
    for lineno, rec in read_jsonl(path, InputError):
        if limit is not None and len(records) >= limit:
            break
        where = f"{path}:{lineno}"
        r = _record(rec, where, default_id=str(lineno))
        if r.id in seen:
            raise InputError(f"{where}: id {r.id!r} was already used at {seen[r.id]}")
        seen[r.id] = where
        records.append(r)
    if not records:
        raise InputError(f"{path}: no prompts")
    return records


def _record(rec: dict, where: str, default_id: str) -> PromptRecord:
    text = rec.get("prompt", rec["input"] if isinstance(rec.get("input"), str) else None)
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: \"prompt\" must be a non-empty string")
        messages: list[dict] = [{"role": "user", "content": text}]
    elif isinstance(rec.get("messages", rec.get("input")), list):
        messages = _messages(rec.get("messages", rec.get("input")), where)
    else:
        raise InputError(f"{where}: expected a \"prompt\" string or a \"messages\" list")
    ref = rec.get("reference", rec.get("ideal", rec.get("target")))
    if isinstance(ref, list):
        ref = ref[0] if ref else None
    if ref is not None and not isinstance(ref, str):
        raise InputError(f"{where}: \"reference\"/\"ideal\"/\"target\" must be a string or a list of strings")
    responses = rec.get("responses", {})
    if not isinstance(responses, dict) or not all(isinstance(v, str) for v in responses.values()):
        raise InputError(f"{where}: \"responses\" must map names to response strings")
    return PromptRecord(str(rec.get("id", default_id)), tuple(messages), ref, responses, where)


def _messages(raw: list, where: str) -> list[dict]:
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise InputError(f"{where}: message {i} must be {{\"role\": one of {', '.join(ROLES)}, "
                             "\"content\": a string}")
        out.append({"role": m["role"], "content": m["content"]})
    if not out or out[-1]["role"] != "user":
        raise InputError(f"{where}: the conversation must end with a user turn (the prompt to answer)")
    return out
