"""A user's own task from a JSONL file: one object per line, every line of the same "type".

    {"type": "multiple_choice", "question": "…\\nAnswer:", "choices": ["…", "…"], "answer": 1}
    {"type": "generate", "prompt": "…", "answer": "…" or ["…", …], "scorer": "exact_match"}
    {"type": "code", "prompt": "def f(x):\\n", "test": "assert f(1) == 2"}

Optional on every line: "id" (default: the line number). Optional for generate/code: "stop"
(list of strings), "max_new_tokens". `scorer` is one of exact_match (normalised text), number
(GSM8K-style numeric answer), math (MATH-style LaTeX answer). The format is in docs/eval.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import EvalDataError, read_jsonl
from ..lm import GenerateRequest
from ..scoring import exact_match, extract_math_answer, extract_number, math_equal, normalize_math_answer
from .answers import AnswerTask
from .base import Item, MultipleChoiceTask, Task
from .code import CodeTask

#: scorer -> (extract completion, is the extracted answer correct for these references)
SCORERS: dict[str, tuple[Callable[[str], str | None], Callable[[str | None, list[str]], bool]]] = {
    "exact_match": (str.strip, lambda a, refs: a is not None and exact_match(a, refs)),
    "number": (extract_number, lambda a, refs: a is not None and any(a == extract_number(r) for r in refs)),
    "math": (extract_math_answer, lambda a, refs: any(math_equal(a, normalize_math_answer(r)) for r in refs)),
}

_REQUIRED = {"multiple_choice": {"question": str, "choices": list, "answer": (int, str)},
             "generate": {"prompt": str, "answer": (str, list)},
             "code": {"prompt": str, "test": str}}


def is_task_file(name: str) -> bool:
    return name.endswith((".jsonl", ".jsonl.gz"))


def load_jsonl_task(path: str | Path) -> Task:
    """Validate the whole file first (errors name the file and line) and build its task."""
    path = Path(path)
    if not path.exists():
        raise EvalDataError(f"{path}: task file not found")
    items: list[Item] = []
    kind = None
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        t = rec.get("type")
        if t not in _REQUIRED:
            raise EvalDataError(f"{where}: \"type\" must be one of {sorted(_REQUIRED)}, got {t!r}")
        if kind is None:
            kind = t
        elif t != kind:
            raise EvalDataError(f"{where}: type {t!r} differs from the file's first line ({kind!r})")
        for key, typ in _REQUIRED[t].items():
            if not isinstance(rec.get(key), typ):
                raise EvalDataError(f"{where}: field {key!r} is missing or not {_typename(typ)}")
        _check_line(rec, where)
        items.append(Item(str(rec.get("id", lineno)), rec))
    if not items:
        raise EvalDataError(f"{path}: no records")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise EvalDataError(f"{path}: duplicate ids: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    name = path.name.removesuffix(".gz").removesuffix(".jsonl")
    cls = {"multiple_choice": JsonlChoice, "generate": JsonlAnswer, "code": JsonlCode}[kind]
    return cls(name, items)


def _typename(typ: type | tuple[type, ...]) -> str:
    types = typ if isinstance(typ, tuple) else (typ,)
    return " or ".join({str: "a string", list: "a list", int: "an integer"}[t] for t in types)


def _check_line(rec: dict[str, Any], where: str) -> None:
    if rec["type"] == "multiple_choice":
        choices, answer = rec["choices"], rec["answer"]
        if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise EvalDataError(f"{where}: \"choices\" must be a list of at least two strings")
        valid = 0 <= answer < len(choices) if isinstance(answer, int) else answer in choices
        if not valid:
            raise EvalDataError(f"{where}: \"answer\" must be an index into \"choices\" or one of them")
    if rec["type"] == "generate" and rec.get("scorer", "exact_match") not in SCORERS:
        raise EvalDataError(f"{where}: \"scorer\" must be one of {sorted(SCORERS)}")
    if "stop" in rec and not (isinstance(rec["stop"], list) and all(isinstance(s, str) for s in rec["stop"])):
        raise EvalDataError(f"{where}: \"stop\" must be a list of strings")
    if "max_new_tokens" in rec and not (isinstance(rec["max_new_tokens"], int) and rec["max_new_tokens"] > 0):
        raise EvalDataError(f"{where}: \"max_new_tokens\" must be a positive integer")


class _FromFile:
    """Items from the file; exemplars sampled from the other lines of the same file."""

    def __init__(self, name: str, items: list[Item]) -> None:
        self.name = name
        self._items = items
        self.description = f"user task from JSONL ({len(items)} items)"

    def load(self) -> list[Item]:
        return self._items

    def fewshot_pool(self, item: Item) -> list[Item]:
        return self._items


class _PerLineGeneration:
    """Stop strings and length may be set per line."""

    def request(self, item: Item, shots: int, samples: int, temperature: float, seed: int) -> GenerateRequest:
        doc = item.doc
        return GenerateRequest(self.prompt(item, shots), doc.get("max_new_tokens", self.max_new_tokens),
                               tuple(doc.get("stop", self.stop)), temperature, samples, seed)


class JsonlChoice(_FromFile, MultipleChoiceTask):
    def question(self, doc: dict[str, Any]) -> str:
        return doc["question"]

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return list(doc["choices"])

    def gold(self, doc: dict[str, Any]) -> int:
        a = doc["answer"]
        return a if isinstance(a, int) else doc["choices"].index(a)


class JsonlAnswer(_FromFile, _PerLineGeneration, AnswerTask):
    primary_metric = "exact_match"
    vote = True

    def question(self, doc: dict[str, Any]) -> str:
        return doc["prompt"]

    def solved(self, exemplar: Item) -> str:
        return f"{exemplar.doc['prompt']} {self.target(exemplar.doc)[0]}"

    def target(self, doc: dict[str, Any]) -> list[str]:
        a = doc["answer"]
        return [a] if isinstance(a, str) else [str(x) for x in a]

    def extract(self, completion: str, doc: dict[str, Any]) -> str | None:
        return SCORERS[doc.get("scorer", "exact_match")][0](completion)

    def correct(self, answer: str | None, doc: dict[str, Any]) -> bool:
        return SCORERS[doc.get("scorer", "exact_match")][1](answer, self.target(doc))


class JsonlCode(_FromFile, _PerLineGeneration, CodeTask):
    stop = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")

    def fewshot_pool(self, item: Item) -> list[Item]:
        return []

    def question(self, doc: dict[str, Any]) -> str:
        return doc["prompt"]

    def target(self, doc: dict[str, Any]) -> str:
        return doc["test"]

    def program(self, doc: dict[str, Any], completion: str) -> str:
        return f"{doc['prompt']}{completion}\n\n{doc['test']}\n"
