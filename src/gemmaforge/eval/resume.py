"""An --output directory across runs. Results are written after every task, so an interrupted run
keeps what finished; a later run with the same settings into the same directory keeps those
tasks and runs only the rest; `overwrite` starts over. A sample log not backed by a kept result
(an older run's, or one cut off mid-write) is removed, so logs and results always belong together.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .results import RESULTS_JSON, EvalResults, TaskResult

log = logging.getLogger(__name__)

#: settings that do not change the numbers, so a resumed run may change them
FREE = ("tasks", "output_dir", "batch_size")


def sample_log(out: Path, task: str) -> Path:
    return out / f"samples_{task}.jsonl"


def previous_results(out: Path, config: dict[str, Any], model: str, overwrite: bool,
                     error: type[Exception]) -> list[TaskResult]:
    """The finished tasks of an earlier run into `out` with the same model and settings (none with
    `overwrite`); removes every file of `out` that is not theirs. A different run's results raise
    `error` rather than be mixed with these."""
    path = out / RESULTS_JSON
    kept: list[TaskResult] = []
    if path.exists() and not overwrite:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            theirs, model_then = data["config"], data["provenance"]["model"]
            kept = [TaskResult.from_dict(t) for t in data["tasks"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise error(f"--output: {path} is not a gemmaforge results file ({e}); "
                        "pass --overwrite to replace it, or choose another directory") from None
        differ = [k for k in sorted(set(config) | set(theirs)) if k not in FREE
                  and _json(config.get(k)) != _json(theirs.get(k))]
        differ += ["model"] if model_then != model else []
        if differ:
            raise error(f"--output: {out} holds results of a run with other settings ({', '.join(differ)}); "
                        "pass --overwrite to replace them, or choose another directory")
    ours = {sample_log(out, t.task).name for t in kept}
    stale = [p for p in out.glob("samples_*.jsonl") if p.name not in ours]
    stale += [out / n for n in (RESULTS_JSON, "results.md") if overwrite and (out / n).exists()]
    for p in stale:
        p.unlink()
    return kept


def merge(results: EvalResults, kept: list[TaskResult]) -> None:
    """Put the kept tasks in `results` (all of them: a finished task is never dropped)."""
    results.tasks[:0] = kept
    results.config["tasks"] = [t.task for t in results.tasks]


def _json(value: Any) -> Any:
    """The value as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))
