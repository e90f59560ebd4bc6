"""What a run reports: a JSONL row per logged step, model FLOPs and MFU, a tqdm bar with ETA."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import GemmaConfig


def flops_per_token(cfg: GemmaConfig, seq_len: int, n_params: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM's formula: 6N + 12·L·H·Dh·T.

    N counts the tied embedding once, as the output projection (the lookup itself is free);
    attention is counted over the full T×T square, as PaLM does, ignoring causality and windows.
    """
    return 6.0 * n_params + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len


def measure_matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048,
                         seconds: float = 1.0, windows: int = 4) -> float:
    """Achievable dense-matmul FLOP/s on `device`: the peak that MFU is measured against here.

    The best of `windows` equal slices of `seconds`: clock boost and neighbours make single
    readings vary by 15% on shared CPUs, and a peak should not be dragged down by a slow slice.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    best = 0.0
    for _ in range(windows):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            a @ b
            done += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        best = max(best, 2.0 * size ** 3 * done / (time.perf_counter() - start))
    return best


class MetricsLog:
    """Appends JSON rows to `path`. On resume, rows past the resumed step (written by the killed
    run after its last checkpoint) are dropped first, so the log reads as one uninterrupted run."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = [row for row in read_rows(path) if row.get("step", math.inf) <= resume_step]
            path.write_text("".join(json.dumps(row) + "\n" for row in kept))

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics log. A line that does not parse is one a crash tore mid-write (the
    log is appended, not fsynced, every step): it is skipped, not fatal."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def progress_bar(total: int, initial: int, enabled: bool, label: str = "train") -> tqdm:
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, desc=label)
