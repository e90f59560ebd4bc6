"""Statistics and answer extraction, checked against direct computations."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from gemmaforge.eval.metrics import macro_average, majority_vote, mean_stderr, pass_at_k
from gemmaforge.eval.scoring import (
    canonical_number,
    exact_match,
    extract_math_answer,
    extract_number,
    last_boxed,
    math_equal,
    normalize_math_answer,
    normalize_text,
    truncate_at_stop,
)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 3, 3), (7, 7, 2), (4, 1, 4)])
def test_pass_at_k_is_probability_some_of_k_drawn_passes(n, c, k):
    samples = [True] * c + [False] * (n - c)
    draws = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in d) for d in draws) / len(draws)
    assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_mean_stderr_matches_statistics_module():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    mean, se = mean_stderr(values)
    assert mean == pytest.approx(statistics.mean(values))
    assert se == pytest.approx(statistics.stdev(values) / math.sqrt(len(values)))
    assert math.isnan(mean_stderr([1.0])[1])


def test_macro_average_weighs_groups_equally():
    groups = {"a": [1.0, 1.0, 0.0, 1.0], "b": [0.0, 0.0]}
    mean, se = macro_average(groups)
    assert mean == pytest.approx((0.75 + 0.0) / 2)
    se_a, se_b = mean_stderr(groups["a"])[1], mean_stderr(groups["b"])[1]
    assert se == pytest.approx(math.sqrt(se_a ** 2 + se_b ** 2) / 2)


def test_majority_vote_ignores_none_and_breaks_ties_by_first_seen():
    assert majority_vote(["3", None, "4", "4", "3", None, None]) == "3"
    assert majority_vote(["5", "6", "6"]) == "6"
    assert majority_vote([None, None]) is None


def test_truncate_at_earliest_stop():
    assert truncate_at_stop("abc\nif x:\n#c", ["\n#", "\nif"]) == "abc"
    assert truncate_at_stop("no stop here", ["\n\n"]) == "no stop here"


def test_text_normalisation_and_exact_match():
    assert normalize_text("  The Sunset  Blvd.! ") == "sunset blvd"
    assert exact_match("the Beatles", ["Beatles", "Fab Four"])
    assert not exact_match("Beatles band", ["Beatles"])


@pytest.mark.parametrize("text,expected", [
    ("48/2 = 24. So the answer is 24.", "24"),
    ("She has 1,250 apples. The answer is $1,250.", "1250"),
    ("first 3 then 7 and finally 12", "12"),  # no strict match: last number
    ("The answer is 18.00", "18"),
    ("The answer is -3.5 and not 4", "-3.5"),
    ("no numbers", None),
])
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_canonical_number():
    assert canonical_number("$1,000.") == "1000"
    assert canonical_number("abc") is None


def test_last_boxed_balances_braces():
    assert last_boxed(r"so \boxed{1} or \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert last_boxed("nothing") is None


@pytest.mark.parametrize("raw,expected", [
    (r"\frac12", r"\frac{1}{2}"),
    (r"x = 5 \text{ inches}", "5"),
    (r"\$1,000", "1000"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"10^{\circ}", "10"),
])
def test_minerva_normalisation(raw, expected):
    assert normalize_math_answer(raw) == expected


def test_math_answer_extraction_prefers_final_answer_line():
    out = r"We get \boxed{3}. Final Answer: The final answer is $\frac{2}{4}$. I hope it is correct."
    assert extract_math_answer(out) == r"\frac{2}{4}"
    assert extract_math_answer(r"thus $\boxed{0.5}$") == "0.5"
    assert math_equal("0.50", ".5") and not math_equal(None, "1") and not math_equal("2", "3")
