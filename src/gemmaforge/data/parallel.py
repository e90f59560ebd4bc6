"""Running per-document work in parallel on one machine (multiprocessing) with progress bars.

An executor maps `fn(context, batch) -> results` over batches of items and returns the results in
input order, so output never depends on scheduling. `context` (filters, models, indexes) is sent to
each worker once, not with every batch. The Ray executor (ray_backend.py) has the same interface.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")
Work = Callable[[Any, list], list]


class Executor(Protocol):
    def map(self, fn: Work, context: Any, items: Sequence[T], desc: str) -> list: ...

    def close(self) -> None: ...


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


_WORKER: tuple[Work, Any] | None = None


def _init_worker(fn: Work, context: Any) -> None:
    global _WORKER
    _WORKER = (fn, context)
    # Ctrl-C reaches the whole process group. Only the parent should act on it (leaving the pool
    # terminates the workers): a worker killed by it mid-task prints a traceback and loses the task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:  # parallelism comes from processes: one torch thread each
        sys.modules["torch"].set_num_threads(1)


def _run(batch: list) -> list:
    fn, context = _WORKER
    return fn(context, batch)


class LocalExecutor:
    """`workers` processes (1: run in this process, easiest to debug), `batch_size` items per task."""

    def __init__(self, workers: int, batch_size: int, progress: bool = True) -> None:
        self.workers, self.batch_size, self.progress = workers, batch_size, progress

    def map(self, fn: Work, context: Any, items: Sequence[T], desc: str) -> list:
        batches = batched(items, self.batch_size)
        out: list = []
        with tqdm(total=len(items), desc=desc, unit="doc", disable=not self.progress) as bar:
            if self.workers == 1 or len(batches) <= 1:
                for b in batches:
                    out.extend(fn(context, b))
                    bar.update(len(b))
                return out
            with mp.Pool(min(self.workers, len(batches)), _init_worker, (fn, context)) as pool:
                for b, res in zip(batches, pool.imap(_run, batches)):
                    out.extend(res)
                    bar.update(len(b))
        return out

    def close(self) -> None:
        pass
