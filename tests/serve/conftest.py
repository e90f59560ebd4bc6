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


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random Gemma 3 with a trained tokenizer, saved as `gemmaforge serve --model` reads it."""
    from serve_helpers import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    import gemmaforge as gf

    return gf.load_model(tiny_dir), gf.load_tokenizer(tiny_dir)
