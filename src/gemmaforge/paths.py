"""Output directories that are proven writable before any work starts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import GemmaForgeError


def writable_dir(path: str | Path, error: type[GemmaForgeError], what: str) -> Path:
    """Create `path` and write a probe file in it, raising `error` ("{what}: cannot write to ...").

    Permission bits say nothing as root, and /proc or a read-only mount fail only on a real write;
    a run that would fail at its first checkpoint or result file should fail before it starts.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise error(f"{what}: cannot write to {out}: {e.strerror or e}") from None
    return out
