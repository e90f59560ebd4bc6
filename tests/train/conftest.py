"""Training tests run on one thread: tiny shapes gain nothing from more, and a shared 2-core
machine makes multi-threaded OpenMP barriers crawl."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
