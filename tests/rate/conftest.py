"""Fixtures for the rating tests: a ratings database and two tiny saved models that share a tokenizer."""

import sysconfig
from pathlib import Path

import pytest
import torch

import gemmaforge as gf
from gemmaforge.rate import RatingStore

DATA = Path(__file__).with_name("data")


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


def add_pairs(store: RatingStore, n: int, prefix: str = "p") -> list[int]:
    """n prompt/two-response pairs stored directly; returns their pair ids."""
    from gemmaforge.rate import Prompt

    ids = []
    with store.transaction() as c:
        for i in range(n):
            pid = store.add_prompt(c, Prompt(f"{prefix}{i}?"))
            a = store.add_response(c, pid, "model-x", f"x answer {i}")
            b = store.add_response(c, pid, "model-y", f"y answer {i}")
            ids.append(store.add_pair(c, pid, a, b))
    return ids


def rate_plan(store: RatingStore, rater: str, verdicts: dict[int, str]) -> None:
    """Rates the pairs from add_pairs through the page's positions, so `verdicts` ("a", "b", "tie",
    "both_bad") land whatever side each response was shown on (a is model-x's "x answer")."""
    for _ in verdicts:
        shown = store.next_pair(rater)
        verdict = verdicts[shown["pair_id"]]
        a_left = shown["left"].startswith("x")
        choice = {"a": "left" if a_left else "right", "b": "right" if a_left else "left"}.get(verdict, verdict)
        store.rate(rater, shown["pair_id"], choice)
