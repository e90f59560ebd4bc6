"""Helpers shared by the rating tests (a module of its own: every test folder has a conftest)."""

from pathlib import Path

from gemmaforge.rate import Prompt, RatingStore

DATA = Path(__file__).with_name("data")


def add_pairs(store: RatingStore, n: int) -> list[int]:
    """n prompt/two-response pairs stored directly; returns their pair ids."""
    ids = []
    with store.transaction() as c:
        for i in range(n):
            pid = store.add_prompt(c, Prompt(f"p{i}?"))
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
