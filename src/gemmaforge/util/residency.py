"""Reading a file-backed tensor once without keeping it resident.

Weights loaded from safetensors are memory-mapped: a page counts in the process's resident memory
from its first touch until the process drops it. A pass that reads every byte once (hashing the
frozen base of a LoRA run) would otherwise keep pages resident that training never touches again;
a reward model reads only its tokens' rows of the embedding, which is 600 MB of gemma3-270m.
`release` drops such pages from this process (madvise MADV_DONTNEED); a later touch reads them
back from the page cache or the file. In a private mapping a page someone wrote to holds the only
copy of that write, so pages are dropped only when /proc/self/pagemap shows every one of them is
still the file's own. Anywhere this cannot be shown (another OS, memory not mapped from a file, a
written page) it does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np
import torch

MADV_DONTNEED = 4
PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _mapping(start: int, end: int) -> list[str] | None:
    """The /proc/self/maps fields of the file mapping holding all of [start, end), if one does."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= start and end <= hi:
                return fields if len(fields) > 5 and fields[4] != "0" and fields[5].startswith("/") else None
    return None


def _unwritten(first: int, end: int) -> bool:
    """No page of [first, end) is a private copy: each is absent or the file's page (pagemap bit
    61), none swapped out (bit 62)."""
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first // PAGE * 8)
            entries = np.frombuffer(f.read(-(-(end - first) // PAGE) * 8), dtype="<u8")
    except OSError:
        return False
    present, swapped, file = ((entries >> np.uint64(b)) & np.uint64(1) for b in (63, 62, 61))
    return bool(not (swapped | (present & ~file & np.uint64(1))).any())


def release(tensor: torch.Tensor) -> None:
    """Drop a CPU tensor's memory-mapped file pages from this process's resident set (and the
    pages it shares with its neighbours, under the same check)."""
    if _libc is None or tensor.device.type != "cpu" or tensor.numel() == 0:
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    first, last = start - start % PAGE, -(-end // PAGE) * PAGE
    fields = _mapping(first, last)
    if fields is None or (fields[1][3] != "s" and not _unwritten(first, last)):
        return
    _libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), MADV_DONTNEED)
