"""The two shapes every benchmark takes: choose among continuations by log-likelihood, or
generate text and check it. A task supplies documents and formatting; the harness does the rest.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..lm import GenerateRequest, LoglikRequest, LoglikResult
from ..metrics import macro_average, mean_stderr

FEWSHOT_SEED = 1234


@dataclass(frozen=True)
class Item:
    """One evaluation document. `group` (e.g. the MMLU subject) gets its own sub-scores."""

    id: str
    doc: dict[str, Any]
    group: str = ""


@dataclass
class Sample:
    """One scored item, as written to the per-sample JSONL log."""

    task: str
    id: str
    prompt: str
    target: Any
    output: Any  # choice scores, or the completions
    verdict: dict[str, float]  # metric name -> this item's value
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Metric:
    value: float
    stderr: float
    n: int


class Task(ABC):
    """A benchmark: its documents, its few-shot pool and its metrics."""

    name: str
    kind: str  # "loglikelihood" or "generate"
    default_shots: int = 0
    primary_metric: str = "acc"
    #: report the unweighted mean over groups (MMLU subjects) as `<metric>_macro`
    macro_average: bool = False
    description: str = ""

    @abstractmethod
    def load(self) -> list[Item]:
        """All evaluation items, in a fixed order."""

    def fewshot_pool(self, item: Item) -> list[Item]:
        """Candidates for `item`'s exemplars; [] means the task is zero-shot only."""
        return []

    def pool_is_ordered(self) -> bool:
        """True when exemplars are the pool's first k (fixed prompts); else a seeded sample."""
        return False

    def max_shots(self, item: Item) -> int:
        return len(self.fewshot_pool(item))

    def exemplars(self, item: Item, shots: int) -> list[Item]:
        """`shots` exemplars for `item`, never `item` itself, the same on every run."""
        pool = [x for x in self.fewshot_pool(item) if x.id != item.id]
        shots = min(shots, len(pool))
        if self.pool_is_ordered():
            return pool[:shots]
        return random.Random(f"{FEWSHOT_SEED}:{self.name}:{item.id}").sample(pool, shots)

    # -- aggregation -----------------------------------------------------------------------
    def aggregate(self, samples: Sequence[Sample]) -> tuple[dict[str, Metric], dict[str, dict[str, Metric]]]:
        """Task-level metrics (mean and standard error of each verdict), and the same per group."""
        by_metric: dict[str, list[float]] = defaultdict(list)
        by_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for s in samples:
            for k, v in s.verdict.items():
                by_metric[k].append(v)
                if s.group:
                    by_group[s.group][k].append(v)
        metrics = {k: Metric(*mean_stderr(v), len(v)) for k, v in by_metric.items()}
        groups = {g: {k: Metric(*mean_stderr(v), len(v)) for k, v in ms.items()}
                  for g, ms in sorted(by_group.items())}
        if self.macro_average and groups:
            for k, values in by_metric.items():
                per_group = {g: ms[k] for g, ms in by_group.items()}
                metrics[f"{k}_macro"] = Metric(*macro_average(per_group), len(values))
        return metrics, groups

    def primary(self, samples: int = 1) -> str:
        """The headline metric's name; `{n}` in `primary_metric` is the number of samples (maj@n)."""
        name = self.primary_metric.format(n=samples)
        return f"{name}_macro" if self.macro_average else name


class MultipleChoiceTask(Task):
    """Pick the continuation with the highest log-likelihood.

    Metrics: `acc` (raw sum of log-probabilities) and `acc_norm` (divided by the length in
    characters of the choice as `choices` gives it, unstripped and without the delimiter: lm-eval
    0.4's `acc_norm`, which removes the bias towards short answers).
    """

    kind = "loglikelihood"
    fewshot_separator = "\n\n"
    target_delimiter = " "
    #: report `acc_norm`; off where lm-eval's config lists `acc` only (MMLU's one-letter choices,
    #: BoolQ's no/yes, WinoGrande's one shared continuation)
    length_normalised = True

    @abstractmethod
    def question(self, doc: dict[str, Any]) -> str:
        """The prompt for one document, up to where the answer starts."""

    @abstractmethod
    def choices(self, doc: dict[str, Any]) -> list[str]:
        """Answer texts, without the leading delimiter."""

    @abstractmethod
    def gold(self, doc: dict[str, Any]) -> int:
        """Index of the correct choice."""

    def header(self, item: Item) -> str:
        """Text before the exemplars (e.g. MMLU's subject line)."""
        return ""

    def pairs(self, doc: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
        """(context, continuation) per choice. Most tasks share one context."""
        ctx = prefix + self.question(doc)
        return [(ctx, self.target_delimiter + c) for c in self.choices(doc)]

    def solved(self, doc: dict[str, Any]) -> str:
        """A document with its correct answer, as a few-shot exemplar."""
        ctx, cont = self.pairs(doc, "")[self.gold(doc)]
        return ctx + cont

    def requests(self, item: Item, shots: int) -> list[LoglikRequest]:
        prefix = self.header(item) + "".join(
            self.solved(x.doc) + self.fewshot_separator for x in self.exemplars(item, shots))
        return [LoglikRequest(c, t) for c, t in self.pairs(item.doc, prefix)]

    def score(self, item: Item, requests: Sequence[LoglikRequest], results: Sequence[LoglikResult]) -> Sample:
        choices = self.choices(item.doc)
        gold = self.gold(item.doc)
        lls = [r.logprob for r in results]
        normed = [ll / max(len(c), 1) for ll, c in zip(lls, choices)]
        pred, pred_norm = _argmax(lls), _argmax(normed)
        verdict = {"acc": float(pred == gold)}
        if self.length_normalised:
            verdict["acc_norm"] = float(pred_norm == gold)
        contexts = {r.context for r in requests}
        return Sample(
            task=self.name, id=item.id, group=item.group,
            prompt=requests[0].context if len(contexts) == 1 else "",
            target=gold,
            output=[{"choice": c, "context": None if len(contexts) == 1 else r.context,
                     "logprob": res.logprob, "n_tokens": res.n_tokens, "greedy": res.greedy,
                     "context_dropped": res.context_dropped}
                    for c, r, res in zip(choices, requests, results)],
            verdict=verdict,
            extra={"pred": pred, **({"pred_norm": pred_norm} if self.length_normalised else {})},
        )


class GenerationTask(Task):
    """Generate, extract an answer, compare. Subclasses define the prompt and the check."""

    kind = "generate"
    stop: tuple[str, ...] = ("\n\n",)
    max_new_tokens: int = 256

    @abstractmethod
    def prompt(self, item: Item, shots: int) -> str:
        """The full prompt (exemplars included) for one item."""

    @abstractmethod
    def target(self, doc: dict[str, Any]) -> Any:
        """The reference answer(s), as logged."""

    def request(self, item: Item, shots: int, samples: int, temperature: float, seed: int) -> GenerateRequest:
        return GenerateRequest(self.prompt(item, shots), self.max_new_tokens, self.stop, temperature,
                               samples, seed)

    @abstractmethod
    def score_all(self, items: Sequence[Item], requests: Sequence[GenerateRequest],
                  completions: Sequence[list[str]]) -> list[Sample]:
        """One Sample per item, from its completions."""


def _argmax(values: Sequence[float]) -> int:
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    return -1 if math.isnan(values[best]) else best
