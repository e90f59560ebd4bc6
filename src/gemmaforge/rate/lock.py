"""One server per database: an OS file lock beside it, released by the OS even if the server dies.

Two servers on one file would each hand out pairs and keep their own idea of who is where; the
second one is refused with a message naming the first (its pid, host and address).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ServerRunning


@contextmanager
def serve_lock(db: Path, address: str) -> Iterator[None]:
    path = db.with_name(db.name + ".lock")
    try:
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed below, after the lock
    except OSError as e:
        raise ServerRunning(f"{path}: cannot create the server lock: {e.strerror or e}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ServerRunning(f"{db} is already served by {holder}; stop that server or use another "
                                f"--db (nothing was changed)") from None
        f.seek(0)
        f.truncate()
        f.write(f"gemmaforge rate serve (pid {os.getpid()} on {socket.gethostname()}, {address}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
