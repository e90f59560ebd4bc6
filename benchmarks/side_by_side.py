"""Run peers' benchmark children alternately (A, B, A, B, ...) and combine their reports.

On a shared machine the load drifts during a run; alternating the peers gives each the same mix
of quiet and busy moments, so their ratio stays meaningful even when the absolute numbers are not.
Each child runs in its own process and prints one JSON line with `tokens`, `seconds` and
`peak_rss_mb` (its own VmHWM: ru_maxrss would carry a parent's peak over an exec).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory since exec, in MB."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def alternate(children: dict[str, list[str]], rounds: int) -> tuple[dict[str, dict], list[float]]:
    """Run every child command once per round, in order; return each child's combined report
    (tokens/s over all its rounds, the highest peak RSS, every round's report) and the 1-minute
    load average before the first run and after each."""
    runs: dict[str, list[dict]] = {name: [] for name in children}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        for name, command in children.items():
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}/{rounds} {name}: {runs[name][-1]['tokens'] / runs[name][-1]['seconds']:.1f} "
                  f"tokens/s, peak RSS {runs[name][-1]['peak_rss_mb']:.0f} MB, load {loads[-1]:.1f}",
                  file=sys.stderr, flush=True)
    combined = {name: {"tokens_per_s": sum(x["tokens"] for x in rs) / sum(x["seconds"] for x in rs),
                       "peak_rss_mb": max(x["peak_rss_mb"] for x in rs), "runs": rs}
                for name, rs in runs.items()}
    return combined, loads


def load_note(loads: list[float], threads: int) -> str:
    """How busy the machine was, in words a reader of the results needs: busy when the load went
    above the benchmark's own threads plus one."""
    busy = max(loads) > threads + 1
    return (f"1-min load average {loads[0]:.1f} before, {loads[-1]:.1f} after (range {min(loads):.1f}–"
            f"{max(loads):.1f}) on {os.cpu_count()} cores: "
            + ("**busy machine**, other jobs shared the cores: read the ratios, not the absolute numbers."
               if busy else "a quiet machine."))


class InOrder:
    """The Trainer's StepData over `items` in file order, `batch` a step: both peers see the same rows
    (TRL's side is told to keep the order too), so their tokens per step match."""

    def __init__(self, items, batch: int) -> None:
        self.items, self.batch = items, batch

    def micro_batches(self, step: int):
        return [self.items[step * self.batch:(step + 1) * self.batch]]

    def position(self, step: int) -> int:
        return step * self.batch

    def identity(self) -> dict:
        return {}
