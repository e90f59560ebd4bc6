"""util.residency: hashing a memory-mapped base must not leave it resident, and must never drop a write."""

from __future__ import annotations

import sys

import pytest
import torch

from gemmaforge.train.modules import frozen_hash
from gemmaforge.util.residency import release

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self")


def resident_kb(t: torch.Tensor) -> int:
    """Resident KB of the pages under `t`, from /proc/self/smaps (the mapping holding it)."""
    start = t.data_ptr()
    with open("/proc/self/smaps") as smaps:
        inside = False
        for line in smaps:
            head = line.split()
            if "-" in head[0] and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                inside = lo <= start < hi
            elif inside and head[0] == "Rss:":
                return int(head[1])
    raise AssertionError("tensor not in any mapping")


@pytest.fixture()
def mapped(tmp_path):
    torch.manual_seed(0)
    torch.save({"w": torch.randn(1 << 21)}, tmp_path / "w.pt")  # 8 MB
    return torch.load(tmp_path / "w.pt", mmap=True, weights_only=True)["w"]


def test_release_drops_read_pages_and_keeps_values(mapped):
    total = float(mapped.sum())
    assert resident_kb(mapped) >= 8 * 1024
    release(mapped)
    assert resident_kb(mapped) < 64
    assert float(mapped.sum()) == total  # read back from the file, unchanged


def test_release_keeps_a_written_page(mapped):
    mapped.sum()
    mapped[12345] = 7.0  # a private copy of that page now holds the only 7.0
    before = resident_kb(mapped)
    release(mapped)
    assert resident_kb(mapped) == before and float(mapped[12345]) == 7.0


def test_release_ignores_anonymous_memory():
    t = torch.ones(1 << 20)
    release(t)
    assert float(t.sum()) == 1 << 20


def test_frozen_hash_of_a_mapped_base_leaves_it_unresident_and_is_the_plain_hash(mapped):
    module = torch.nn.Linear(1 << 11, 1 << 10, bias=False)
    module.weight = torch.nn.Parameter(mapped.view(1 << 10, 1 << 11), requires_grad=False)
    copy = torch.nn.Linear(1 << 11, 1 << 10, bias=False)
    copy.weight = torch.nn.Parameter(mapped.clone().view(1 << 10, 1 << 11), requires_grad=False)
    assert frozen_hash(module) == frozen_hash(copy)
    assert resident_kb(mapped) < 64
