"""SFT rows as the filter reads them: chat JSONL or prompt/response JSONL.

A chat row is `{"messages": [{"role", "content"}, ...]}` (the format transformers and the OpenAI
fine-tuning API use); a pair row is `{"prompt", "response"}` (`completion` is accepted for
`response`). Each model turn, with the user turn before it, is one exchange to score.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..util.jsonl import read_jsonl

ROLES = {"system": "system", "user": "user", "model": "model", "assistant": "model"}


def exchanges(row: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """(prompt, response) for each model turn of `row`; raises InputError naming `where`."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise InputError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} objects")
        out, prompt = [], ""
        for i, m in enumerate(messages):
            if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise InputError(f"{where}: message {i} must be an object with string 'role' and 'content'")
            role = ROLES.get(m["role"])
            if role is None:
                raise InputError(f"{where}: message {i} has unknown role {m['role']!r}; expected one of "
                                 f"{', '.join(ROLES)}")
            if role == "user":
                prompt = m["content"]
            elif role == "model":
                out.append((prompt, m["content"]))
        if not out:
            raise InputError(f"{where}: the conversation has no model turn (role 'model' or 'assistant')")
        return out
    response = row.get("response", row.get("completion"))
    if isinstance(row.get("prompt"), str) and isinstance(response, str):
        return [(row["prompt"], response)]
    raise InputError(f"{where}: expected {{'messages': [...]}} or string 'prompt' and 'response' fields, "
                     f"got keys {sorted(row)}")


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for each row of a JSONL file, each checked by `exchanges` (errors name file:line)."""
    for line, row in read_jsonl(path, InputError):
        exchanges(row, f"{path}:{line}")
        yield line, row


def map_text(row: Mapping[str, Any], fn) -> dict[str, Any]:
    """A copy of `row` with `fn` applied to every text the filter looks at (contents, prompt, response)."""
    out = dict(row)
    if "messages" in row:
        out["messages"] = [{**m, "content": fn(m["content"])} for m in row["messages"]]
    else:
        for key in ("prompt", "response", "completion"):
            if isinstance(row.get(key), str):
                out[key] = fn(row[key])
    return out
