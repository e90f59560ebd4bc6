"""Append-only JSON Lines logs that survive a crash: each record is written and flushed to disk as
soon as it exists, and a reopened log keeps every complete line (a half-written last line, the
mark of a crash mid-write, is cut off)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError


class AppendLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = _recover(path)
        self._f = open(path, "a", encoding="utf-8")

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write `records` and make them durable before returning."""
        if not records:
            return
        self._f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records += records

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recover(path: Path) -> list[dict[str, Any]]:
    """The complete records already in `path`; a torn last line is truncated away."""
    if not path.exists():
        return []
    data = path.read_bytes()
    keep = data if data.endswith(b"\n") or not data else data[:data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        with open(path, "r+b") as f:
            f.truncate(len(keep))
    records = []
    for lineno, line in enumerate(keep.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg}); this log was edited or corrupted: "
                             "fix or remove the line to resume") from None
        if not isinstance(rec, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object in this log")
        records.append(rec)
    return records
