"""Evaluation harness: benchmarks on offline data, batched scoring, a code sandbox, results
with standard errors and provenance, and decontamination n-grams. Protocols: docs/eval.md.

    from gemmaforge.eval import run_eval
    results = run_eval("gemma3-270m", ["arc_easy", "humaneval"], limit=50, output_dir="runs/eval")
    results["arc_easy"].metrics["acc"].value
"""

from .cli import add_eval_arguments, eval_main
from .data import EvalDataError
from .gemma_lm import GemmaLM
from .harness import EvalConfig, EvalConfigError, evaluate, run_eval
from .lm import GenerateRequest, LanguageModel, LoglikRequest, LoglikResult
from .results import EvalResults, TaskResult
from .sandbox import RunResult, Sandbox, SandboxConfig, SandboxError
from .tasks import TASKS, Task, UnknownTaskError, get_task

__all__ = [
    "TASKS",
    "EvalConfig",
    "EvalConfigError",
    "EvalDataError",
    "EvalResults",
    "GemmaLM",
    "GenerateRequest",
    "LanguageModel",
    "LoglikRequest",
    "LoglikResult",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "Task",
    "TaskResult",
    "UnknownTaskError",
    "add_eval_arguments",
    "eval_main",
    "evaluate",
    "get_task",
    "run_eval",
]
