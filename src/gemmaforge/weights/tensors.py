"""Reading tensors safely and building a model from a state dict, with errors that name the file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import GemmaConfig
from ..errors import CheckpointError
from ..model import Gemma, check_dtype
from ..util.paths import umask


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


def read_safetensors_dir(directory: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or every shard named by model.safetensors.index.json."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{index}: malformed shard index: {e}") from None
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (directory / shard).exists():
                raise CheckpointError(f"{directory / shard}: shard listed in {index.name} is missing")
            tensors.update(read_safetensors(directory / shard))
        return tensors
    single = directory / "model.safetensors"
    if not single.exists():
        raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    return read_safetensors(single)


SHARDED = "sharded"  # a checkpoint's torch.distributed.checkpoint folder (training, format "sharded")


@contextmanager
def dcp_quietly() -> Iterator[None]:
    """torch.distributed.checkpoint warns whenever it runs in one process, which is meant here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def read_sharded(directory: Path, prefix: str = "model") -> dict[str, torch.Tensor]:
    """The full tensors under `prefix` of a torch.distributed.checkpoint folder, in one process.

    Training with `checkpoint.format = "sharded"` writes one, each rank its own shards; this joins
    them whatever the number of ranks that wrote it.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    try:
        reader = dcp.FileSystemReader(str(directory))
        meta = reader.read_metadata().state_dict_metadata
        state = {k[len(prefix) + 1:]: torch.empty(m.size, dtype=m.properties.dtype)
                 for k, m in meta.items() if k.startswith(prefix + ".") and isinstance(m, TensorStorageMetadata)}
        with dcp_quietly():
            dcp.load({prefix: state}, storage_reader=reader, no_dist=True)
    except (OSError, RuntimeError, ValueError, dcp.CheckpointException) as e:
        raise CheckpointError(f"{directory}: not a readable sharded checkpoint (truncated or corrupt?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not state:
        raise CheckpointError(f"{directory}: a sharded checkpoint without {prefix!r} tensors")
    return state


def build_model(cfg: GemmaConfig, state: dict[str, torch.Tensor], where: str,
                dtype: torch.dtype = torch.float32) -> Gemma:
    """Create Gemma(cfg) and fill it from `state` (our names), checking every name and shape.

    Tensors are checked before any is copied, so a bad checkpoint leaves no half-loaded model.
    """
    check_dtype(dtype)
    with torch.device("meta"):
        model = Gemma(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"unexpected {len(extra)} tensors (e.g. {', '.join(extra[:3])})")
        raise CheckpointError(f"{where}: does not match the config: {'; '.join(parts)}")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise CheckpointError(f"{where}: tensor {k} has shape {tuple(state[k].shape)}, "
                                  f"the config needs {shape}")
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    return model.eval()


def check_output(target: Path, overwrite: bool = False) -> None:
    """Refuse to replace anything at `target` but an empty directory, unless `overwrite`: the user's
    files (or another checkpoint) would be lost."""
    if overwrite or not os.path.lexists(target):
        return
    if not target.is_dir():
        raise CheckpointError(f"{target}: is a file, not a directory; pass overwrite=True (--force) to replace it")
    if any(target.iterdir()):
        raise CheckpointError(f"{target}: directory is not empty; pass overwrite=True (--force) to replace it")


def _default_modes(root: Path) -> None:
    """Give `root` and everything in it the modes a plain `open`/`mkdir` would (temporary files are private)."""
    mask = umask()
    root.chmod(0o777 & ~mask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_dir(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Write into a temporary sibling directory and rename it over `target` only on success.

    Anything at `target` other than an empty directory is replaced only with `overwrite`."""
    target = Path(target)
    check_output(target, overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        raise CheckpointError(f"{target}: cannot write here: {e.strerror}") from None
    try:
        yield tmp
        _default_modes(tmp)
        _replace(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (OSError, SafetensorError)):  # a full disk, a read-only mount, ...
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).removeprefix(
                "Error while serializing: ").removeprefix("I/O error: ")
            raise CheckpointError(f"{target}: cannot write here: {reason}; nothing there was changed") from None
        raise


def _replace(new: Path, target: Path) -> None:
    """Rename `new` to `target`; whatever was there (a directory or a file) is moved aside, then deleted."""
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rename(target, trash / target.name)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(trash / target.name, target)  # put the old one back
        trash.rmdir()
        raise
    shutil.rmtree(trash, ignore_errors=True)


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
