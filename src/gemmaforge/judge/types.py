"""What a judge takes and returns, and how two orders make one verdict.

Every pair is judged twice, once as (A=response_a, B=response_b) and once swapped, to cancel the
judge's preference for a position. Each order gives the probability that response_a is the better
one; the verdict is a tie unless both orders agree (FastChat's rule for its pairwise judge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ..errors import GemmaForgeError

Verdict = Literal["a", "b", "tie"]


class JudgeError(GemmaForgeError):
    """A judge that cannot be loaded or reached, or that answers something unusable."""


@dataclass(frozen=True)
class JudgeItem:
    """Two responses to one prompt; `reference` is a known good answer shown to the judge if given."""

    prompt: str
    response_a: str
    response_b: str
    reference: str | None = None


@dataclass(frozen=True)
class Judgement:
    """The judge's view of one item in both orders.

    p_a_first: probability that response_a is better when it is shown first (as "A");
    p_a_second: the same probability when the order is swapped (response_a shown as "B").
    mass_first/second: how much probability the judge put on the two answer labels at all (None when
    the judge only answered in text) -- a low mass means the judge hardly followed the format.
    raw_first/second: what the judge answered, as text, when its probabilities were not available.
    """

    item: JudgeItem
    p_a_first: float
    p_a_second: float
    verdict: Verdict
    mass_first: float | None = None
    mass_second: float | None = None
    raw_first: str | None = None
    raw_second: str | None = None

    @property
    def flipped(self) -> bool:
        """Whether the two orders preferred different responses (the judge followed the position)."""
        return {order_winner(self.p_a_first), order_winner(self.p_a_second)} == {"a", "b"}


@runtime_checkable
class Judge(Protocol):
    """Judges batches of pairs; each item is judged in both orders. (gemmaforge's judges also have
    a `name`, recorded with a run; `judge_name` falls back to the class name.)"""

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        """One judgement per item, in item order."""
        ...


def order_winner(p_a: float) -> Verdict:
    """The response one order prefers; exactly 0.5 prefers neither."""
    return "a" if p_a > 0.5 else "b" if p_a < 0.5 else "tie"


def combine(item: JudgeItem, p_a_first: float, p_a_second: float, **extra: object) -> Judgement:
    """The judgement from both orders' probabilities: a verdict only when the orders agree."""
    first, second = order_winner(p_a_first), order_winner(p_a_second)
    verdict: Verdict = first if first == second else "tie"
    return Judgement(item, p_a_first, p_a_second, verdict, **extra)  # type: ignore[arg-type]


def judge_name(judge: Judge) -> str:
    return str(getattr(judge, "name", type(judge).__name__))
