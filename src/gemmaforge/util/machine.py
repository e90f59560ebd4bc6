"""What machine a number was measured on: written next to every benchmark and eval result."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


@functools.cache
def cpu_vendor() -> str:
    """"AuthenticAMD", "GenuineIntel", ... ("" where /proc/cpuinfo does not say)."""
    return _cpuinfo("vendor_id") or ""
