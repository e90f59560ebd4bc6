"""Runs tasks against a model: builds every request of a task, hands the whole batch to the
model (which batches and shares prefixes), scores, logs each sample, aggregates."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GemmaForgeError
from ..paths import writable_dir
from .lm import LanguageModel
from .results import EvalResults, TaskResult, provenance
from .sandbox import Sandbox, SandboxConfig
from .tasks import CodeTask, Item, Sample, Task, get_task

log = logging.getLogger(__name__)

LIMIT_SEED = 1234


class EvalConfigError(GemmaForgeError, ValueError):
    """Evaluation settings that cannot work together."""


@dataclass
class EvalConfig:
    """Everything that decides the numbers, besides the model and the versions."""

    tasks: tuple[str, ...]
    limit: int | None = None  # items per task: a fixed seeded subset, so slices span all subjects
    shots: int | None = None  # None: each task's standard number (docs/eval.md)
    batch_size: int = 8
    samples: int = 1  # completions per prompt for generation tasks (pass@k, maj@k)
    temperature: float = 0.0  # 0 = greedy
    seed: int = 1234
    chat: bool = False  # wrap prompts in the tokenizer's chat template (instruction-tuned models)
    max_length: int | None = None  # context budget in tokens (prompt + completion); None: the model's
    output_dir: str | None = None
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)

    def validate(self) -> None:
        if not self.tasks:
            raise EvalConfigError("no tasks given")
        if self.limit is not None and self.limit < 1:
            raise EvalConfigError(f"limit must be positive, got {self.limit}")
        if self.shots is not None and self.shots < 0:
            raise EvalConfigError(f"shots must be >= 0, got {self.shots}")
        if self.batch_size < 1:
            raise EvalConfigError(f"batch_size must be positive, got {self.batch_size}")
        if self.samples < 1:
            raise EvalConfigError(f"samples must be positive, got {self.samples}")
        if self.max_length is not None and self.max_length < 1:
            raise EvalConfigError(f"max_length must be positive, got {self.max_length}")
        if self.samples > 1 and self.temperature <= 0:
            raise EvalConfigError("samples > 1 needs temperature > 0 (greedy samples are all the same)")


def select(items: Sequence[Item], limit: int | None) -> list[Item]:
    """The first `limit` items of a fixed permutation, kept in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(LIMIT_SEED).shuffle(order)
    return [items[i] for i in sorted(order[:limit])]


def load_tasks(names: Sequence[str]) -> list[Task]:
    """The tasks, refusing two of the same name: their results and sample logs would overwrite each
    other (task files `a/mine.jsonl` and `b/mine.jsonl` are both `mine`)."""
    tasks = [get_task(name) for name in names]
    seen: dict[str, str] = {}
    for name, task in zip(names, tasks):
        if task.name in seen:
            raise EvalConfigError(f"tasks {seen[task.name]!r} and {name!r} are both named {task.name!r}; "
                                  "rename one (results and sample logs are kept by task name)")
        seen[task.name] = name
    return tasks


def shots_for(task: Task, requested: int | None, item: Item) -> int:
    """The task's default, or the requested number capped by its exemplar pool (code: 0)."""
    shots = task.default_shots if requested is None else requested
    return min(shots, task.max_shots(item))


def evaluate(lm: LanguageModel, config: EvalConfig, *, model_source: str = "", command: str | None = None
             ) -> EvalResults:
    """Evaluate `lm` on `config.tasks`; writes the logs and results when `config.output_dir` is set."""
    tasks, out = _prepare(config)
    sandbox = Sandbox(config.sandbox) if any(isinstance(t, CodeTask) for t in tasks) else None
    results = EvalResults(config=_config_dict(config),
                          provenance=provenance(command or f"run_eval({config.tasks!r})", model_source or lm.name))
    for task in tasks:
        if isinstance(task, CodeTask):
            task.sandbox = sandbox
        start = time.monotonic()
        items = select(task.load(), config.limit)
        samples, truncated = _run_task(lm, task, items, config)
        metrics, groups = task.aggregate(samples)
        shots = shots_for(task, config.shots, items[0]) if items else 0
        primary = task.primary(config.samples)
        log_path = _write_samples(out / f"samples_{task.name}.jsonl", samples) if out else None
        result = TaskResult(task.name, task.description, len(items), shots, primary, metrics, groups,
                            round(time.monotonic() - start, 3), str(log_path) if log_path else None, truncated)
        results.tasks.append(result)
        if truncated:
            log.warning(result.truncation_note())
        m = metrics[primary]
        log.info("%s: %s = %.4f ± %.4f (n=%d)", task.name, primary, m.value, m.stderr, m.n)
    if out:
        results.write(out)
    return results


def _prepare(config: EvalConfig) -> tuple[list[Task], Path | None]:
    """Everything the user's settings can get wrong, checked before any model work."""
    config.validate()
    tasks = load_tasks(config.tasks)
    return tasks, (writable_dir(config.output_dir, EvalConfigError, "--output") if config.output_dir else None)


def _run_task(lm: LanguageModel, task: Task, items: list[Item], config: EvalConfig) -> tuple[list[Sample], int]:
    """The scored samples, and how many log-likelihood requests lost context tokens to max_length."""
    if task.kind == "loglikelihood":
        per_item = [task.requests(it, shots_for(task, config.shots, it)) for it in items]
        flat = lm.loglikelihood([r for reqs in per_item for r in reqs])
        samples, pos = [], 0
        for it, reqs in zip(items, per_item):
            samples.append(task.score(it, reqs, flat[pos:pos + len(reqs)]))
            pos += len(reqs)
        return samples, sum(r.context_dropped > 0 for r in flat)
    requests = [task.request(it, shots_for(task, config.shots, it), config.samples, config.temperature,
                             config.seed) for it in items]
    return task.score_all(items, requests, lm.generate(requests)), 0


def _write_samples(path: Path, samples: Sequence[Sample]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(dataclasses.asdict(s), ensure_ascii=False) + "\n" for s in samples)
    return path


def _config_dict(config: EvalConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["tasks"] = list(config.tasks)
    return d


def run_eval(model: str | LanguageModel, tasks: Sequence[str] | str, *, limit: int | None = None,
             shots: int | None = None, batch_size: int = 8, output_dir: str | None = None, samples: int = 1,
             temperature: float = 0.0, seed: int = 1234, chat: bool = False, max_length: int | None = None,
             sandbox: SandboxConfig | None = None, dtype: str = "float32", threads: int | None = None,
             command: str | None = None, quantize: str | None = None,
             group_size: int | None = None) -> EvalResults:
    """Evaluate a model on tasks: the library form of `gemmaforge eval`.

    `model` is a gemmaforge source ("gemma3-270m", a checkpoint directory, a .gguf file) or any
    object implementing `LanguageModel`. `tasks` are names (see `gemmaforge.eval.TASKS`) or
    paths to JSONL task files, as a list or a comma-separated string. `threads` sets torch's
    intra-op threads (on a shared machine, fewer threads than cores avoids spin-wait collapse).
    `quantize` ("int8" | "int4", with `group_size`) loads the model weight-only quantised.
    """
    names = tuple(t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip())
    config = EvalConfig(tasks=names, limit=limit, shots=shots, batch_size=batch_size, samples=samples,
                        temperature=temperature, seed=seed, chat=chat, max_length=max_length,
                        output_dir=output_dir, sandbox=sandbox or SandboxConfig())
    if threads is not None and threads < 1:
        raise EvalConfigError(f"threads must be >= 1, got {threads}")
    _prepare(config)  # bad settings, task names or an output directory fail before the model loads
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    if isinstance(model, str):
        from .gemma_lm import GemmaLM
        lm: LanguageModel = GemmaLM.load(model, batch_size=batch_size, chat=chat, max_length=max_length,
                                         dtype=dtype, quantize=quantize, group_size=group_size)
        source = model
    else:
        lm, source = model, getattr(model, "name", type(model).__name__)
    if command is None:
        command = (f"gemmaforge.eval.run_eval({source!r}, {list(names)!r}, limit={limit}, shots={shots}, "
                   f"batch_size={batch_size}, samples={samples}, temperature={temperature}, seed={seed}, "
                   f"chat={chat}, max_length={max_length}, dtype={dtype!r}, threads={threads}"
                   + (f", quantize={quantize!r}, group_size={group_size})" if quantize else ")"))
    return evaluate(lm, config, model_source=source, command=command)
