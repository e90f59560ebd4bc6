"""The serve tests run torch on one thread: tiny models gain nothing from more, and on a shared
machine multi-threaded ops stall (a step takes 50x longer when another process holds a core)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
