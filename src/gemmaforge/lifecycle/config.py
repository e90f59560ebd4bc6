"""The pipeline's config: the embedded default (default.toml), `--quick` (quick.toml on top) and a
user's `--config FILE` on top of that. A key the defaults do not have is an error naming it, except
inside a training stage's TrainConfig sections, which TrainConfig itself checks (before any work)."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from ..train.config import TrainConfig
from ..util import configfile
from .errors import PipelineError

TRAIN_SECTIONS = {f for f in TrainConfig.__dataclass_fields__ if f != "out_dir"}


def embedded(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files(__package__).joinpath(name).read_text("utf-8"))


def merge(base: dict[str, Any], over: dict[str, Any], where: str, free: bool = False) -> dict[str, Any]:
    """`over` laid on `base`; a key `base` lacks is an error unless `free` (a TrainConfig section)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{where}.{key}" if where else key
        if key not in base and not free:
            raise PipelineError(f"config key {name}: no stage knows it; known here: {', '.join(base) or 'none'}")
        if isinstance(value, dict) and isinstance(base.get(key, {}), dict):
            out[key] = merge(base.get(key, {}), value, name, free)
        else:
            out[key] = value
    return out


def merge_stage(base: dict[str, Any], over: dict[str, Any], stage: str, trains: bool) -> dict[str, Any]:
    """A stage's table; for training stages the TrainConfig sections are open (TrainConfig checks them)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{stage}.{key}"
        if trains and key in TRAIN_SECTIONS:
            if not isinstance(value, dict):
                raise PipelineError(f"config key {name}: must be a table")
            out[key] = merge(base.get(key, {}), value, name, free=True)
        elif key in base:
            out[key] = merge(base[key], value, name) if isinstance(value, dict) and isinstance(base[key], dict) \
                else value
        else:
            hint = f" (a training stage takes the sections {', '.join(sorted(TRAIN_SECTIONS))})" if trains else ""
            raise PipelineError(f"config key {name}: no stage knows it; {stage} takes {', '.join(base)}{hint}")
    return out


def load_config(path: str | Path | None, quick: bool, training_stages: set[str], base: bool = False) -> dict[str, Any]:
    """The effective config: default, then quick, then (with --base) the real model's settings
    (base.toml, and quick-base.toml with --quick), then the user's file."""
    config = embedded("default.toml")
    names = ["quick.toml"] * quick + ["base.toml"] * base + ["quick-base.toml"] * (quick and base)
    layers = [embedded(name) for name in names]
    if path is not None:
        layers.append(configfile.read_table(path, PipelineError))
    for layer in layers:
        for stage, table in layer.items():
            if stage not in config:
                raise PipelineError(f"config key {stage}: no such stage or table; known: {', '.join(config)}")
            if not isinstance(table, dict):
                raise PipelineError(f"config key {stage}: must be a table")
            config[stage] = merge_stage(config[stage], table, stage, stage in training_stages)
    return config
