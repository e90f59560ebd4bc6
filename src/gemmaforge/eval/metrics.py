"""Aggregate statistics: means with standard errors, pass@k, majority voting."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std, ddof=1, over sqrt(n)); stderr is NaN when n < 2.

    This is what lm-eval reports, so the two harnesses' error bars are comparable.
    """
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def macro_average(groups: dict[str, Sequence[float]]) -> tuple[float, float]:
    """Unweighted mean over groups (MMLU subjects) and its standard error.

    The groups are independent samples, so the variance of the mean of group means is the sum
    of the groups' squared standard errors over the number of groups squared. A group of one
    sample has no variance estimate, so then neither has the macro average: its standard error
    is NaN (undefined), not a number that looks precise.
    """
    stats = [mean_stderr(v) for v in groups.values() if len(v)]
    if not stats:
        return math.nan, math.nan
    mean = sum(m for m, _ in stats) / len(stats)
    var = sum(se ** 2 for _, se in stats) / len(stats) ** 2  # NaN when any group's is
    return mean, math.sqrt(var)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al., 2021, eq. 1).

    1 - C(n-c, k) / C(n, k), computed as a product so it stays exact for large n.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority_vote(answers: Sequence[T | None]) -> T | None:
    """Most frequent non-None answer; ties go to the one seen first. None if all are None."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)
