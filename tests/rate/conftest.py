"""Fixtures for the rating tests: a ratings database and two tiny saved models that share a tokenizer."""

import sysconfig
from pathlib import Path

import pytest
import torch

import gemmaforge as gf
from gemmaforge.rate import RatingStore


@pytest.fixture
def store(tmp_path) -> RatingStore:
    return RatingStore(tmp_path / "ratings.sqlite")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> list[str]:
    """Two tiny random Gemma 3s (different seeds, so different answers) saved with one trained tokenizer."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rate_models")
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:20]
    tok = gf.train_tokenizer(files, 600, root / "tok")
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = gf.Gemma(gf.GemmaConfig.preset("tiny-gemma3").replace(vocab_size=600))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.1)
        gf.save_model(model, root / f"m{seed}")
        tok.save(root / f"m{seed}")
        out.append(str(root / f"m{seed}"))
    return out
