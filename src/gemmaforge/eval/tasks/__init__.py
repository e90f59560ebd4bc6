"""Task registry: built-in benchmarks by name, or a path to a user's JSONL task file."""

from __future__ import annotations

from collections.abc import Callable

from ...errors import GemmaForgeError
from .answers import GSM8K, MATH, TriviaQA
from .base import GenerationTask, Item, Metric, MultipleChoiceTask, Sample, Task
from .choice import ARC, MMLU, PIQA, BoolQ, HellaSwag, WinoGrande
from .code import MBPP, CodeTask, HumanEval
from .custom import is_task_file, load_jsonl_task

TASKS: dict[str, Callable[[], Task]] = {
    "mmlu": MMLU,
    "arc_easy": lambda: ARC("Easy"),
    "arc_challenge": lambda: ARC("Challenge"),
    "hellaswag": HellaSwag,
    "piqa": PIQA,
    "boolq": BoolQ,
    "winogrande": WinoGrande,
    "triviaqa": TriviaQA,
    "gsm8k": GSM8K,
    "math": MATH,
    "math500": lambda: MATH("math500"),
    "humaneval": HumanEval,
    "mbpp": MBPP,
}


class UnknownTaskError(GemmaForgeError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def get_task(name: str) -> Task:
    """A built-in task by name, or a user task from a .jsonl/.jsonl.gz path."""
    if is_task_file(name):
        return load_jsonl_task(name)
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} "
                               "(or a path to a .jsonl task file)")
    return TASKS[name]()


__all__ = [
    "TASKS",
    "CodeTask",
    "GenerationTask",
    "Item",
    "Metric",
    "MultipleChoiceTask",
    "Sample",
    "Task",
    "UnknownTaskError",
    "get_task",
]
