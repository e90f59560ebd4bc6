"""Runs tasks against a model: builds every request of a task, hands the whole batch to the
model (which batches and shares prefixes), scores, logs each sample, aggregates."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GemmaForgeError
from ..util.paths import writable_dir, write_atomic
from .lm import LanguageModel
from .results import EvalResults, TaskResult, format_number, provenance
from .resume import merge, previous_results, sample_log
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
    dtype: str | None = None  # of a model loaded by name (None: a LanguageModel object's own)
    quantize: str | None = None  # weight-only scheme of a model loaded by name ("int8", "int4")
    group_size: int | None = None  # its columns per scale (None: the scheme's default)
    mix: str | None = None  # int4's per-layer mix ("q4_k_m"; None: every layer int4)

    def validate(self) -> None:
        """Every setting in range, so nothing fails after the model loaded."""
        if not self.tasks:
            raise EvalConfigError("no tasks given")
        sb = self.sandbox
        checks = [("limit", self.limit, 1), ("shots", self.shots, 0), ("batch_size", self.batch_size, 1),
                  ("samples", self.samples, 1), ("max_length", self.max_length, 1),
                  ("temperature", self.temperature, 0), ("code timeout (seconds)", sb.timeout_s, None),
                  ("sandbox cpu_seconds", sb.cpu_seconds, 1), ("sandbox memory_bytes", sb.memory_bytes, 1),
                  ("sandbox max_processes", sb.max_processes, 1)]
        for name, value, low in checks:
            check_number(name, value, low)
        if self.samples > 1 and self.temperature <= 0:
            raise EvalConfigError("samples > 1 needs temperature > 0 (greedy samples are all the same)")


def check_number(name: str, value: float | None, low: float | None) -> None:
    """`value` (None: unset) is a finite number >= `low`; `low` None means > 0. Else one line."""
    if value is None:
        return
    bound = f">= {low}" if low is not None else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EvalConfigError(f"{name} must be a number {bound}, got {value!r}")
    if not math.isfinite(value) or (value < low if low is not None else value <= 0):
        raise EvalConfigError(f"{name} must be {bound}, got {value}")


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


def evaluate(lm: LanguageModel, config: EvalConfig, *, model_source: str = "", command: str | None = None,
             overwrite: bool = False) -> EvalResults:
    """Evaluate `lm` on `config.tasks`. With `config.output_dir`, each task's log and the results so
    far are written as soon as it finishes; tasks an earlier run with the same settings finished
    there are kept and skipped (`overwrite`: start over); see `resume`."""
    source = model_source or lm.name
    return _evaluate(lm, config, _prepare(config, source, overwrite), source, command)


@dataclass
class _Prepared:
    tasks: list[Task]
    out: Path | None
    kept: list[TaskResult]


def _prepare(config: EvalConfig, model_source: str, overwrite: bool) -> _Prepared:
    """Everything the user's settings can get wrong, checked before any model work; clears what an
    earlier run into the output directory left that the results do not back."""
    config.validate()
    tasks = load_tasks(config.tasks)
    if not config.output_dir:
        return _Prepared(tasks, None, [])
    out = writable_dir(config.output_dir, EvalConfigError, "--output")
    return _Prepared(tasks, out, previous_results(out, _config_dict(config), model_source, overwrite,
                                                  EvalConfigError))


def _evaluate(lm: LanguageModel, config: EvalConfig, prep: _Prepared, source: str, command: str | None
              ) -> EvalResults:
    results = EvalResults(config=_config_dict(config),
                          provenance=provenance(command or f"run_eval({config.tasks!r})", source))
    merge(results, prep.kept)
    done = {t.task for t in prep.kept}
    sandbox = Sandbox(config.sandbox) if any(isinstance(t, CodeTask) for t in prep.tasks) else None
    for task in prep.tasks:
        if task.name in done:
            log.warning("%s: finished by an earlier run into %s, kept (--overwrite to run it again)",
                        task.name, prep.out)
            continue
        if isinstance(task, CodeTask):
            task.sandbox = sandbox
        start = time.monotonic()
        items = select(task.load(), config.limit)
        samples, truncated = _run_task(lm, task, items, config)
        metrics, groups = task.aggregate(samples)
        shots = shots_for(task, config.shots, items[0]) if items else 0
        primary = task.primary(config.samples)
        log_path = _write_samples(sample_log(prep.out, task.name), samples) if prep.out else None
        result = TaskResult(task.name, task.description, len(items), shots, primary, metrics, groups,
                            round(time.monotonic() - start, 3), str(log_path) if log_path else None, truncated)
        results.tasks.append(result)
        results.config["tasks"] = [t.task for t in results.tasks]
        if prep.out:  # now, so an interrupted run keeps every finished task
            results.write(prep.out)
        if truncated:
            log.warning(result.truncation_note())
        m = metrics[primary]
        log.info("%s: %s = %s ± %s (n=%d)", task.name, primary, format_number(m.value), format_number(m.stderr), m.n)
    return results


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
    write_atomic(path, "".join(json.dumps(dataclasses.asdict(s), ensure_ascii=False) + "\n"
                               for s in samples).encode())
    return path


def _config_dict(config: EvalConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["tasks"] = list(config.tasks)
    return d


def run_eval(model: str | LanguageModel, tasks: Sequence[str] | str, *, limit: int | None = None,
             shots: int | None = None, batch_size: int = 8, output_dir: str | None = None, samples: int = 1,
             temperature: float = 0.0, seed: int = 1234, chat: bool = False, max_length: int | None = None,
             sandbox: SandboxConfig | None = None, dtype: str = "float32", threads: int | None = None,
             command: str | None = None, overwrite: bool = False, quantize: str | None = None,
             group_size: int | None = None, mix: str | None = None) -> EvalResults:
    """Evaluate a model on tasks: the library form of `gemmaforge eval`.

    `model` is a gemmaforge source ("gemma3-270m", a checkpoint directory, a .gguf file) or any
    object implementing `LanguageModel`. `tasks` are names (see `gemmaforge.eval.TASKS`) or
    paths to JSONL task files, as a list or a comma-separated string. `threads` sets torch's
    intra-op threads (on a shared machine, fewer threads than cores avoids spin-wait collapse).
    An `output_dir` that holds an earlier run's results with the same settings is resumed (its
    finished tasks kept); `overwrite` starts over. `quantize` ("int8" | "int4", with `group_size`
    and `mix`) loads a model given by name weight-only quantised (docs/quantize.md).
    """
    names = tuple(t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip())
    by_name = isinstance(model, str)
    config = EvalConfig(tasks=names, limit=limit, shots=shots, batch_size=batch_size, samples=samples,
                        temperature=temperature, seed=seed, chat=chat, max_length=max_length,
                        output_dir=output_dir, sandbox=sandbox or SandboxConfig(), dtype=dtype if by_name else None,
                        quantize=quantize if by_name else None, group_size=group_size if by_name else None,
                        mix=mix if by_name else None)
    check_number("threads", threads, 1)
    source = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    # bad settings, task names or an output directory fail before the model loads
    prep = _prepare(config, source, overwrite)
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    if isinstance(model, str):
        from .gemma_lm import GemmaLM
        lm: LanguageModel = GemmaLM.load(model, batch_size=batch_size, chat=chat, max_length=max_length,
                                         dtype=dtype, quantize=quantize, group_size=group_size, mix=mix)
    else:
        lm = model
    if command is None:
        command = (f"gemmaforge.eval.run_eval({source!r}, {list(names)!r}, limit={limit}, shots={shots}, "
                   f"batch_size={batch_size}, samples={samples}, temperature={temperature}, seed={seed}, "
                   f"chat={chat}, max_length={max_length}, dtype={dtype!r}, threads={threads}"
                   + (f", quantize={quantize!r}, group_size={group_size}, mix={mix!r})" if quantize else ")"))
    return _evaluate(lm, config, prep, source, command)
