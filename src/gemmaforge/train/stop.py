"""Stopping a run at a step boundary on SIGINT (Ctrl-C) or SIGTERM (what Slurm and Kubernetes send
before they preempt a job), so the Trainer can write a checkpoint first instead of losing the steps
since the last one. A second signal acts at once, as if this were not installed."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from .distributed import all_sum

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A context manager that turns the first SIGINT/SIGTERM into a request checked between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def requested(self, device: torch.device) -> bool:
        """Whether any rank was signalled (collective: every rank calls it at the same step)."""
        flag = torch.tensor([0.0 if self.signal is None else 1.0], device=device)
        return bool(all_sum(flag).item() > 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "another rank's signal"
