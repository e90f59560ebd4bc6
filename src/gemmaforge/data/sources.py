"""Reading documents from text files, JSONL, Parquet, directories and globs.

`resolve_sources` runs first and checks every path, so an unreadable source stops the run before
any work is done; `read_source` then yields `Document`s in a fixed order (sorted paths).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..util.jsonl import read_jsonl
from .config import SourceConfig
from .errors import DataError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".tex", ".html", ".c", ".h", ".js", ".java", ".go", ".rs"}


@dataclass
class Document:
    """One unit of text; `id` is stable across runs (source name, file, line or row)."""

    id: str
    text: str
    source: str
    kind: str


def file_format(path: Path, declared: str) -> str:
    """`declared` unless it is "auto", then by extension."""
    if declared != "auto":
        return declared
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    return "text"


def _wanted_in_dir(path: Path, declared: str) -> bool:
    if any(part.startswith(".") or part == "__pycache__" for part in path.parts):
        return False
    return declared != "auto" or file_format(path, "auto") != "text" or path.suffix.lower() in TEXT_SUFFIXES


def resolve_paths(src: SourceConfig, where: str) -> list[Path]:
    """Expand `src.paths` (files, directories recursively, globs) to readable files, in sorted order."""
    files: list[Path] = []
    for spec in src.paths:
        p = Path(spec).expanduser()
        if glob.has_magic(spec):
            found = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if os.path.isfile(m))
            if not found:
                raise DataError(f"{where} ({src.name}): the pattern {spec!r} matches no file")
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _wanted_in_dir(f.relative_to(p), src.format))
            if not found:
                raise DataError(f"{where} ({src.name}): the directory {p} holds no readable document file")
        elif p.is_file():
            found = [p]
        else:
            raise DataError(f"{where} ({src.name}): no such file or directory: {p}")
        files.extend(found)
    for f in files:
        if not os.access(f, os.R_OK):
            raise DataError(f"{where} ({src.name}): cannot read {f}: permission denied")
        if file_format(f, src.format) == "parquet":
            _need_pyarrow(f)
    return files


def _need_pyarrow(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading Parquet ({path}) needs pyarrow: pip install 'pyarrow>=14'") from None
    return pq


def read_files(src: SourceConfig, files: list[Path]) -> Iterator[Document]:
    """Documents of `src` from already resolved files, in order, at most `src.max_docs`."""
    n = 0
    for f in files:
        try:
            for doc_id, text in _read_file(f, file_format(f, src.format), src.text_field):
                yield Document(f"{src.name}:{doc_id}", text, src.name, src.kind)
                n += 1
                if src.max_docs is not None and n >= src.max_docs:
                    return
        except (OSError, ValueError) as e:  # gzip, UTF-8 and Arrow errors surface here mid-file
            raise DataError(f"{src.name}: cannot read {f}: {e}") from None


def open_source(src: SourceConfig, where: str) -> Callable[[], Iterator[Document]]:
    """Check that `src` is readable now; return a function that reads its documents later."""
    if src.builtin:
        from .default_corpus import PARTS, require_parts

        require_parts([src.builtin])
        part = PARTS[src.builtin]
        return lambda: (Document(f"{src.name}:{i}", t, src.name, src.kind)
                        for i, t in part.documents(src.max_docs))
    files = resolve_paths(src, where)
    return lambda: read_files(src, files)


def _read_file(path: Path, fmt: str, field: str) -> Iterator[tuple[str, str]]:
    if fmt == "text":
        try:
            yield str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text (byte {e.start}); convert it to UTF-8 "
                            "(e.g. iconv -f latin1 -t utf-8)") from None
    elif fmt == "jsonl":
        for no, rec in read_jsonl(path, DataError):
            yield f"{path}:{no}", _field(rec, field, f"{path}:{no}")
    else:  # parquet
        pf = _need_pyarrow(path).ParquetFile(path)
        if field not in pf.schema_arrow.names:
            raise DataError(f"{path}: no column {field!r} (columns: {', '.join(pf.schema_arrow.names)})")
        row = 0
        for batch in pf.iter_batches(columns=[field]):
            for value in batch.column(0).to_pylist():
                yield f"{path}:{row}", _field({field: value}, field, f"{path} row {row}")
                row += 1


def _field(rec: dict, field: str, where: str) -> str:
    value = rec.get(field)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} missing or not a string")
    return value
