"""ROUGE-L against Google's `rouge-score` package (the reference implementation), no stemming."""

from __future__ import annotations

import random

import pytest

from gemmaforge.eval.scoring import rouge_l

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer", reason="rouge-score is a dev extra")

CASES = [
    ("The cat sat on the mat.", "the CAT, sat on a mat!"),
    ("", "a reference"),
    ("a candidate", ""),
    ("no overlap here", "entirely different words"),
    ("Paris is the capital of France", "The capital of France is Paris"),
    ("café au lait, 3.14 € — naïve", "cafe au lait 3 14 naive"),
    ("x " * 50, "x y " * 30),
]


def _random_texts(n: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    vocab = ["the", "a", "cat", "dog", "sat", "ran", "on", "mat", "42", "Big", "RED", "it's", "-", ","]
    text = lambda: " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 25)))  # noqa: E731
    return [(text(), text()) for _ in range(n)]


@pytest.mark.parametrize(("candidate", "reference"), CASES + _random_texts(40))
def test_rouge_l_equals_rouge_score(candidate: str, reference: str) -> None:
    want = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(reference, candidate)["rougeL"].fmeasure
    assert rouge_l(candidate, reference) == pytest.approx(want, abs=1e-12)
