"""Training checkpoints: everything needed to continue a run as if it had never stopped.

`<out_dir>/checkpoints/step-00000100/` holds
  config.json + model.safetensors   the model, in gemmaforge's own format (`gf.load_model` reads it)
  optimizer.pt                      AdamW and LR-scheduler state (full, unsharded)
  rng-00000.pt, rng-00001.pt, ...   python / numpy / torch (/ CUDA) RNG states of each rank
  trainer.json                      step, data position, run identity, the TrainConfig
  module.json                       only for a module other than a fully trained Gemma: its wrapper
                                    (kind + config), LoRA layers, and the frozen base (source + SHA-256)
When parameters are frozen, model.safetensors (and the sharded state) hold only the trainable
ones; `load_trained` rebuilds the module from the base source, checks its hash, and adds them.
With `format = "sharded"`, model.safetensors and optimizer.pt give way to `sharded/` (model and
AdamW state, each rank writing its own shards with torch.distributed.checkpoint) and
scheduler.pt: nothing is gathered on one rank. `gf.load_model` reads these too.
A checkpoint is written into `.tmp-step-…` and renamed into place only once every rank has
finished writing, so a run killed at any moment leaves either the old or the new checkpoint, never
a torn one. Only the newest `keep` are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..config import GemmaConfig
from ..weights.sources import STEP_PREFIX, step_dirs
from ..weights.tensors import SHARDED, dcp_quietly, read_safetensors
from .distributed import DistInfo, barrier
from .errors import TrainError

MODULE_FILE = "module.json"

def step_dir(directory: Path, step: int) -> Path:
    return directory / f"{STEP_PREFIX}{step:08d}"



def latest_checkpoint(directory: Path) -> Path | None:
    found = step_dirs(directory)
    return found[-1] if found else None


def remove_partial(directory: Path) -> None:
    """Delete temporary directories that a run killed mid-save left behind."""
    if directory.is_dir():
        for p in directory.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)


def _full_options(info: DistInfo) -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, cpu_offload=info.distributed)


def save_checkpoint(directory: Path, step: int, model: nn.Module, config: GemmaConfig,
                    optimizer: torch.optim.Optimizer, scheduler: Any, meta: dict[str, Any], keep: int,
                    info: DistInfo, sharded: bool = False, record: dict[str, Any] | None = None,
                    keys: set[str] | None = None, tokenizer: Any = None) -> Path:
    """Collective: every rank calls it. Returns the checkpoint directory. A write that fails (a
    full disk) leaves the older checkpoints as they were and raises one TrainError line.
    `record` describes a module other than a plain Gemma (module.json); `keys`, when given, are
    the only model tensors saved (the trainable ones); a `tokenizer` is written beside the
    weights, so the checkpoint works as `--model` for generate, chat, eval and convert."""
    tmp = directory / f".tmp-{step_dir(directory, step).name}"
    try:
        return _save(directory, tmp, step, model, config, optimizer, scheduler, meta, keep, info, sharded,
                     record, keys, tokenizer)
    except (TrainError, OSError) as e:
        if info.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # creating or renaming the directory
            raise _write_error(tmp, e) from None
        raise


def _save(directory: Path, tmp: Path, step: int, model: nn.Module, config: GemmaConfig,
          optimizer: torch.optim.Optimizer, scheduler: Any, meta: dict[str, Any], keep: int, info: DistInfo,
          sharded: bool, record: dict[str, Any] | None, keys: set[str] | None, tokenizer: Any) -> Path:
    if not sharded:
        model_state = _only(get_model_state_dict(model, options=_full_options(info)), keys)
        optim_state = get_optimizer_state_dict(model, optimizer, options=_full_options(info))
    final = step_dir(directory, step)
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed mid-write
        tmp.mkdir(parents=True)
    barrier()
    _write(tmp / f"rng-{info.rank:05d}.pt", torch.save, _rng_state())
    if sharded:  # collective; its files are fsynced as written
        try:
            with dcp_quietly():
                dcp.save(_sharded_state(model, optimizer, keys), checkpoint_id=tmp / SHARDED,
                         no_dist=not info.distributed)
        except (dcp.CheckpointException, OSError, RuntimeError) as e:
            raise _write_error(tmp / SHARDED, e) from None
    if info.is_main:
        _write(tmp / "config.json", lambda text, p: p.write_text(text), config.to_json())
        if tokenizer is not None:
            _write(tmp / "tokenizer.model", lambda tok, p: tok.save(p.parent), tokenizer)
        if not is_plain(record):
            _write(tmp / MODULE_FILE, lambda m, p: p.write_text(json.dumps(m, indent=2)), record)
        if sharded:
            _write(tmp / "scheduler.pt", torch.save, scheduler.state_dict())
        else:
            _write(tmp / "model.safetensors", lambda t, p: save_file(t, str(p), metadata={"format": "gemmaforge"}),
                   {k: v.detach().contiguous() for k, v in model_state.items()})
            _write(tmp / "optimizer.pt", torch.save, {"optimizer": optim_state, "scheduler": scheduler.state_dict()})
        _write(tmp / "trainer.json", lambda m, p: p.write_text(json.dumps(m, indent=2)),
               {**meta, "step": step, "world_size": info.world_size})
    barrier()
    if info.is_main:
        shutil.rmtree(final, ignore_errors=True)  # only when re-saving the very same step
        os.rename(tmp, final)
        _fsync(directory)
        for old in step_dirs(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer, keys: set[str] | None) -> dict[str, Any]:
    """This rank's shards of model and optimizer state (plain tensors when not sharded)."""
    return {"model": _only(get_model_state_dict(model), keys),
            "optimizer": get_optimizer_state_dict(model, optimizer)}


def _only(state: dict[str, Any], keys: set[str] | None) -> dict[str, Any]:
    return state if keys is None else {k: v for k, v in state.items() if k in keys}


def is_plain(record: dict[str, Any] | None) -> bool:
    """A fully trained bare Gemma: the checkpoint is an ordinary model directory."""
    return record is None or not any(record.values())


def read_record(path: Path) -> dict[str, Any] | None:
    """module.json of a checkpoint (None: a plain Gemma)."""
    file = path / MODULE_FILE
    if not file.exists():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise TrainError(f"{file}: unreadable ({e})") from None


def _write(path: Path, writer: Any, obj: Any) -> None:
    try:
        writer(obj, path)
        _fsync(path)
    except (OSError, RuntimeError, SafetensorError) as e:  # torch.save reports a full disk as RuntimeError
        raise _write_error(path, e) from None


def _write_error(path: Path, e: BaseException) -> TrainError:
    # torch.save's own message ("enforce fail at inline_container.cc ...") says nothing to a user
    reason = e.strerror if isinstance(e, OSError) and e.strerror else f"the write failed ({type(e).__name__})"
    try:
        free = f"; {shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        free = ""
    return TrainError(f"cannot write {path}: {reason}{free}. Older checkpoints are intact")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "trainer.json").read_text())
    except (OSError, ValueError) as e:
        raise TrainError(f"{path}: not a readable training checkpoint ({e})") from None


def check_compatible(path: Path, meta: dict[str, Any], config: GemmaConfig, identity: dict[str, Any],
                     record: dict[str, Any] | None = None) -> None:
    """Refuse, naming every difference, a checkpoint written for another model or data stream."""
    try:
        saved = GemmaConfig.from_json(path / "config.json").to_dict()
    except Exception as e:  # noqa: BLE001 - any failure here means "not our checkpoint"
        raise TrainError(f"{path}: cannot read its model config ({e})") from None
    diffs = [f"model.{k}: {saved.get(k)!r} there, {v!r} here" for k, v in config.to_dict().items()
             if saved.get(k) != v and k != "name"]
    diffs += [f"{k}: {meta.get('identity', {}).get(k)!r} there, {v!r} here" for k, v in identity.items()
              if meta.get("identity", {}).get(k) != v]
    saved_record = read_record(path) or {}
    here = record or {}
    diffs += [f"module {k}: {_brief(saved_record.get(k))} there, {_brief(here.get(k))} here"
              for k in sorted(set(saved_record) | set(here)) if saved_record.get(k) != here.get(k)]
    if diffs:
        raise TrainError(f"cannot resume from {path}: it was written by a different run ("
                         + "; ".join(diffs) + "). Use another out_dir, or the config that wrote it.")


def _brief(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    info: DistInfo, keys: set[str] | None = None) -> dict[str, Any]:
    """Collective: restore model, optimizer, scheduler and this rank's RNG; return trainer.json.
    Either format loads whatever `checkpoint.format` the run now has. With `keys` (a run with a
    frozen base) only those model tensors are in the checkpoint; the rest stay as loaded."""
    meta = read_meta(path)
    options = StateDictOptions(full_state_dict=True, strict=keys is None)
    if (path / SHARDED).is_dir():
        state = _sharded_state(model, optimizer, keys)
        try:
            with dcp_quietly():
                dcp.load(state, checkpoint_id=path / SHARDED, no_dist=not info.distributed)
        except (OSError, RuntimeError, ValueError, dcp.CheckpointException) as e:
            raise TrainError(f"{path / SHARDED}: unreadable sharded checkpoint ({str(e).splitlines()[0]})") from None
        set_model_state_dict(model, state["model"], options=StateDictOptions(strict=keys is None))
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(_torch_load(path / "scheduler.pt"))
    else:
        state = read_safetensors(path / "model.safetensors")
        set_model_state_dict(model, state, options=options)
        saved = _torch_load(path / "optimizer.pt")
        set_optimizer_state_dict(model, optimizer, saved["optimizer"], options=StateDictOptions(full_state_dict=True))
        scheduler.load_state_dict(saved["scheduler"])
    rng = path / f"rng-{info.rank:05d}.pt"
    if rng.exists():
        _set_rng_state(torch.load(rng, weights_only=True))
    else:  # resumed with more ranks than wrote it: a fresh, still deterministic stream
        seed_everything(hash((meta["step"], info.rank)) & 0xFFFF_FFFF)
    return meta


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise TrainError(f"{path}: unreadable ({e})") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                       "pos": numpy_state["state"]["pos"], "has_gauss": numpy_state["has_gauss"],
                       "gauss": numpy_state["gauss"]}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                               "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
