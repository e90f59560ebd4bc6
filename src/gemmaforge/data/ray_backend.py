"""The same per-document work on Ray (`ray.data`), for corpora that outgrow one machine's processes.

Batches travel as pickled payloads and run the very functions the local executor runs, in actors
that hold the context once; results are re-ordered by batch index. That is what makes a Ray run's
shards byte-identical to a local run's.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DataError
from .parallel import Work, batched


class _Task:
    """A ray.data actor: keeps (fn, context) and applies fn to each pickled batch."""

    def __init__(self, fn: Work, context: Any) -> None:
        self.fn, self.context = fn, context

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = [pickle.dumps(self.fn(self.context, pickle.loads(p))) for p in rows["payload"]]
        return {"idx": rows["idx"], "payload": np.array(out, dtype=object)}


class RayExecutor:
    """Starts a local Ray instance with `workers` CPUs unless Ray is already initialised or `address` is given."""

    def __init__(self, workers: int, batch_size: int, progress: bool = True, address: str | None = None) -> None:
        try:
            import ray
            import ray.data
        except ImportError:
            raise DataError("backend 'ray' needs Ray: pip install 'ray[data]>=2.9'") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().enable_progress_bars = progress
        self.workers, self.batch_size = workers, batch_size

    def map(self, fn: Work, context: Any, items: Sequence, desc: str) -> list:
        batches = batched(items, self.batch_size)
        if not batches:
            return []
        rows = [{"idx": i, "payload": pickle.dumps(b)} for i, b in enumerate(batches)]
        ds = self._ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            _Task, fn_constructor_kwargs={"fn": fn, "context": context}, batch_size=1,
            concurrency=min(self.workers, len(rows)), num_cpus=1)
        out: list = []
        for row in sorted(ds.take_all(), key=lambda r: r["idx"]):
            out.extend(pickle.loads(row["payload"]))
        return out

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
