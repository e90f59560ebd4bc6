"""Writing outputs safely: directories proven writable before work starts, files replaced atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import GemmaForgeError


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


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # what open() would give, not mkstemp's private 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def umask() -> int:
    """The process's umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
