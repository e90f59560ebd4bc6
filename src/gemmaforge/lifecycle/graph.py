"""The stage graph and its content-addressed cache.

Each stage's output directory is `RUN/stages/NAME-KEY`, where KEY hashes the stage's config and
its inputs' keys: change a stage's config and it, and everything after it, gets a new directory
(re-runs); nothing before it changes. A stage is finished when its `done.json` (written
atomically, last) exists and the stage's declared outputs are all still there. A stage directory without
`done.json` is an interrupted run: training stages resume from its newest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.paths import write_atomic
from .errors import PipelineError
from .launch import Launch

LAYOUT_VERSION = 1  # bump when a run directory's layout changes incompatibly
RUN_FILE = "pipeline.json"
DONE = "done.json"


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]  # stages whose outputs this one reads
    run: Callable[[Context], dict[str, Any]]  # returns the stage's summary (kept in done.json)
    outputs: tuple[str, ...] = ()  # files or directories that must exist once it is done
    trains: bool = False  # config holds TrainConfig sections; resumes from checkpoints
    reads: tuple[str, ...] = ()  # "table.key" of other tables the stage reads (part of its key)


@dataclass
class Context:
    """What a running stage sees: its config, its output directory, its inputs' directories."""
    stage: Stage
    config: dict[str, Any]  # the whole pipeline config (stages read [run] too)
    out: Path
    inputs: dict[str, Path]
    resume: bool
    base: str | None  # `--base`: a shipped model post-trained instead of pre-training one
    data_backend: str = "local"  # how `data` runs (not in the key: both backends give the same shards)
    launch: Launch = Launch()  # how training stages run (not in the key: the same steps either way)

    @property
    def section(self) -> dict[str, Any]:
        return self.config.get(self.stage.name, {})

    def input_summary(self, name: str) -> dict[str, Any]:
        return json.loads((self.inputs[name] / DONE).read_text())["summary"]


def stage_keys(stages: list[Stage], config: dict[str, Any], base: str | None) -> dict[str, str]:
    """Each stage's key: a hash of its config, [run], --base and its inputs' keys (in order)."""
    keys: dict[str, str] = {}
    for s in stages:
        payload = {"stage": s.name, "layout": LAYOUT_VERSION, "config": config.get(s.name, {}),
                   "run": config.get("run", {}), "base": base, "inputs": {i: keys[i] for i in s.inputs},
                   "reads": {r: _lookup(config, r) for r in s.reads}}
        keys[s.name] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return keys


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    table, _, key = dotted.partition(".")
    return config.get(table, {}).get(key)


def open_run(directory: Path) -> None:
    """Create the run directory, or check that an existing one was made by a compatible version."""
    record = directory / RUN_FILE
    if record.exists():
        try:
            version = json.loads(record.read_text()).get("layout")
        except (OSError, ValueError, AttributeError) as e:
            raise PipelineError(f"{record}: unreadable ({e}); use another --output") from None
        if version != LAYOUT_VERSION:
            raise PipelineError(f"{directory} was written by a gemmaforge with run layout {version}, this one "
                                f"reads layout {LAYOUT_VERSION}; use another --output (nothing there was changed)")
        return
    if directory.exists() and any(directory.iterdir()):
        raise PipelineError(f"{directory} is not empty and is not a pipeline run (no {RUN_FILE}); "
                            "use another --output")
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(record, (json.dumps({"layout": LAYOUT_VERSION}) + "\n").encode())


def stage_dir(run: Path, stage: Stage, key: str) -> Path:
    return run / "stages" / f"{stage.name}-{key}"


def finished(directory: Path, stage: Stage) -> dict[str, Any] | None:
    """The done record of a finished stage, None if it has not finished; a finished stage whose
    outputs were deleted by hand is an error (its record would lie)."""
    done = directory / DONE
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    missing = [f for f in stage.outputs if not (directory / f).exists()]
    if missing:
        raise PipelineError(f"stage {stage.name}: {directory} is marked done but {', '.join(missing)} is gone "
                            f"(deleted by hand?); remove {directory} to re-run it, or --from {stage.name}")
    return record


def mark_done(directory: Path, summary: dict[str, Any], wall_s: float, key: str) -> dict[str, Any]:
    record = {"key": key, "summary": summary, "wall_s": wall_s, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_atomic(directory / DONE, (json.dumps(record, indent=2, default=str) + "\n").encode())
    return record


def set_aside(directory: Path) -> None:
    """`--from`/`--only` re-run a finished stage: its old output moves to NAME.previous, not deleted."""
    if directory.exists():
        previous = directory.with_name(directory.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        directory.rename(previous)


def plan(stages: list[Stage], start: str | None, only: str | None) -> tuple[list[Stage], set[str]]:
    """(stages to consider, stages forced to re-run). Unknown names are errors."""
    names = [s.name for s in stages]
    for flag, value in (("--from", start), ("--only", only)):
        if value is not None and value not in names:
            raise PipelineError(f"{flag} {value}: no such stage; stages: {', '.join(names)}")
    if only is not None:
        return [s for s in stages if s.name == only], {only}
    if start is not None:
        k = names.index(start)
        return stages, set(names[k:])
    return stages, set()
