"""One JSON Lines reader for every part that reads records: data sources, eval sets, n-gram exports.

Each caller passes its own error class, so a bad line surfaces as that part's error with the file
and line number, never as a bare JSONDecodeError from deep inside.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import GemmaForgeError, InputError


def read_jsonl(path: str | Path, error: type[GemmaForgeError] = InputError) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a `.jsonl` or `.jsonl.gz` file.

    Raises `error` naming `path:line` for an unreadable file, bytes that are not UTF-8, a line that
    is not JSON, or a line that is JSON but not an object.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    lineno = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}:{lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
                if not isinstance(record, dict):
                    raise error(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
                yield lineno, record
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text after line {lineno} ({e.reason})") from None
    except (OSError, EOFError) as e:  # EOFError: a truncated .gz
        raise error(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
