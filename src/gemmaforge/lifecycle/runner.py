"""Run the stage graph: skip what is finished, resume what was interrupted, re-run what changed,
under one progress bar (stage k of n, ETA) above each stage's own bars."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .config import load_config
from .errors import PipelineError
from .graph import DONE, Context, finished, mark_done, open_run, plan, set_aside, stage_dir, stage_keys
from .launch import Launch
from .stages import POLICY_STAGES, policy_stage
from .stages import stages as build_stages


@dataclass(frozen=True)
class PipelineOptions:
    output: Path
    config: Path | None = None
    quick: bool = False
    start: str | None = None  # --from
    only: str | None = None  # --only
    base: str | None = None  # --base gemma3-270m
    human: bool = False
    data_backend: str = "local"  # --data-backend: local processes or ray.data
    nproc: int = 1  # --nproc: processes per training stage (torchrun when > 1)
    progress: bool = True


def run_pipeline(opts: PipelineOptions) -> dict[str, Any]:
    """Run (or continue) the pipeline; returns {stage: {"dir", "status", "record"}} and writes the report."""
    import torch

    trains = {s.name for p in POLICY_STAGES.values() for s in build_stages(opts.base, p) if s.trains}
    config = load_config(opts.config, opts.quick, trains, opts.base is not None)
    policy = policy_stage(config)
    graph = build_stages(opts.base, policy)
    if opts.human:  # a config key like any other, so human and AI pairs are cached apart
        config["prefs"]["human"] = True
    todo, forced = plan(graph, opts.start, opts.only)
    _check_train_configs(graph, config)
    keys = stage_keys(graph, config, opts.base)
    open_run(opts.output)
    dirs = {s.name: stage_dir(opts.output, s, keys[s.name]) for s in graph}
    torch.set_num_threads(config["run"]["threads"])
    launch = Launch(opts.nproc, config["run"]["threads"])
    states: dict[str, Any] = {}
    bar = tqdm(total=len(todo), desc="pipeline", unit="stage", position=0, disable=not opts.progress,
               bar_format="{desc} {n_fmt}/{total_fmt} stages |{bar}| {elapsed} elapsed, ETA {remaining}")
    try:
        for k, s in enumerate(todo, 1):
            bar.set_description(f"pipeline: stage {k}/{len(todo)} {s.name}")
            states[s.name] = _run_stage(s, graph, dirs, config, opts, s.name in forced, keys[s.name], launch)
            bar.update(1)
    finally:
        bar.close()
    _write_state(opts.output, graph, dirs, keys, config, opts)
    _link_final_model(opts.output, dirs[policy])
    from .report import write_report

    write_report(opts.output, graph, dirs, config, opts)
    return states


def _check_train_configs(graph, config: dict[str, Any]) -> None:
    """Every training stage's sections through TrainConfig now, so a typo fails before any work."""
    from ..train.config import TrainConfig
    from ..train.errors import TrainError

    for s in graph:
        if s.trains:
            table = {k: dict(v) for k, v in config[s.name].items() if isinstance(v, dict)}
            if s.name != "pretrain":  # the model comes from the stage before: no preset to check
                table.setdefault("model", {})["init_from"] = "checked-later"
            try:
                TrainConfig.from_dict(table | {"out_dir": "checked-later"})
            except TrainError as e:
                raise PipelineError(f"config [{s.name}]: {e}") from None


def _run_stage(s, graph, dirs: dict[str, Path], config, opts: PipelineOptions, forced: bool,
               key: str, launch: Launch) -> dict[str, Any]:
    out = dirs[s.name]
    by_name = {g.name: g for g in graph}
    missing = [i for i in s.inputs if finished(dirs[i], by_name[i]) is None]
    if missing:
        raise PipelineError(f"stage {s.name} needs {', '.join(missing)}, which has not finished with this config; "
                            f"run without --only, or --from {missing[0]}")
    if forced and (out / DONE).exists():  # a forced re-run of a finished stage; an interrupted one resumes
        set_aside(out)
    elif (record := finished(out, s)) is not None:
        return {"dir": str(out), "status": "cached", "record": record}
    resume = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = s.run(Context(s, config, out, {i: dirs[i] for i in s.inputs}, resume, opts.base,
                             opts.data_backend, launch))
    record = mark_done(out, summary, time.perf_counter() - started, key)
    return {"dir": str(out), "status": "resumed" if resume else "ran", "record": record}


def _link_final_model(run: Path, policy: Path) -> None:
    """RUN/model points at the finished policy (RLHF or DPO) of this config: `gemmaforge chat --model RUN/model`."""
    if not (policy / DONE).exists():
        return
    tmp = run / ".model.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(policy.relative_to(run) / "model")
    tmp.replace(run / "model")  # atomic: the link is always whole


def _write_state(run: Path, graph, dirs, keys, config, opts: PipelineOptions) -> None:
    """RUN/state.json: which directory holds each stage of the current config (the report reads it)."""
    from ..util.paths import write_atomic

    state = {"stages": {s.name: {"dir": str(dirs[s.name].relative_to(run)), "key": keys[s.name],
                                 "done": (dirs[s.name] / DONE).exists()} for s in graph},
             "config": config, "quick": opts.quick, "base": opts.base}
    write_atomic(run / "state.json", (json.dumps(state, indent=2) + "\n").encode())
