"""`filter_pairs`: drop unsafe SFT rows and mask (or drop) personal data, every drop with a reason.

Reason codes: `input/empty_response` (a model turn with no text), `pii/<rule>` (only with
pii="drop"), `safety/unsafe` (the classifier's probability for some exchange >= threshold). A
conversation is scored per model turn (with the user turn before it) and dropped for its worst
turn. Drops keep the row with personal data masked, so the drops file spreads none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from . import pii as piilib
from .rows import exchanges, map_text

PII_MODES = ("mask", "drop", "off")
Scorer = Callable[[Sequence[tuple[str, str]]], Sequence[float]]


@dataclass
class FilterResult:
    kept: list[dict[str, Any]] = field(default_factory=list)  # rows, personal data masked unless pii="off"
    dropped: list[dict[str, Any]] = field(default_factory=list)  # {"line", "reason", "detail", "row"}
    masked: Counter = field(default_factory=Counter)  # rule -> rows of `kept` masked by it
    scores: list[float] = field(default_factory=list)  # worst-turn probability of every scored row
    threshold: float = 0.5

    def reasons(self) -> Counter:
        return Counter(d["reason"] for d in self.dropped)


def filter_pairs(rows: Sequence[dict[str, Any]], threshold: float | None = None, pii: str = "mask",
                 scorer: Scorer | None = None, lines: Sequence[int] | None = None, batch_size: int = 16,
                 progress: bool = False) -> FilterResult:
    """Filter SFT rows (chat or prompt/response dicts). `scorer` defaults to `safety.score` with the
    shipped head, `threshold` to the head's; `lines` (e.g. file line numbers) label the drops."""
    if pii not in PII_MODES:
        raise InputError(f"pii must be one of {', '.join(PII_MODES)}, got {pii!r}")
    if scorer is None or threshold is None:
        from .classifier import default_threshold, score
        scorer = scorer or (lambda pairs: score(pairs, batch_size=batch_size, progress=progress))
        threshold = default_threshold() if threshold is None else threshold
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be within [0, 1], got {threshold}")
    lines = list(lines) if lines is not None else list(range(1, len(rows) + 1))
    result = FilterResult(threshold=threshold)
    todo: list[tuple[int, dict, dict, list[str], list[tuple[str, str]]]] = []  # line, row, masked, rules, turns
    for line, row in zip(lines, rows):
        clean, fired, drop = _screen(row, line, pii)
        if drop is not None:
            result.dropped.append(drop)
        else:
            shown = row if pii == "off" else clean
            todo.append((line, shown, clean, fired if pii == "mask" else [], exchanges(shown, f"row {line}")))
    flat = [pair for *_, pairs in todo for pair in pairs]
    scores = list(scorer(flat)) if flat else []
    if len(scores) != len(flat):
        raise InputError(f"the safety scorer returned {len(scores)} scores for {len(flat)} exchanges")
    at = 0
    for line, row, clean, rules, pairs in todo:
        turn_scores = scores[at: at + len(pairs)]
        at += len(pairs)
        worst = max(range(len(pairs)), key=turn_scores.__getitem__)
        p = float(turn_scores[worst])
        result.scores.append(p)
        if p >= threshold:
            turn = f", model turn {worst + 1} of {len(pairs)}" if len(pairs) > 1 else ""
            result.dropped.append(_drop(line, "safety/unsafe", f"p={p:.2f} >= {threshold:.2f}{turn}", clean))
        else:
            result.kept.append(row)
            result.masked.update(rules)
    result.dropped.sort(key=lambda d: d["line"])
    return result


def _screen(row: dict[str, Any], line: int, pii: str) -> tuple[dict[str, Any], list[str], dict[str, Any] | None]:
    """The row with personal data masked, the PII rules that fired, and a drop for an empty model
    turn or (pii="drop") personal data; checks the row's shape first."""
    pairs = exchanges(row, f"row {line}")
    fired: list[str] = []

    def masked(text: str) -> str:
        new, rules = piilib.mask(text)
        fired.extend(r for r in rules if r not in fired)
        return new
    clean = map_text(row, masked)
    if any(not response.strip() for _, response in pairs):
        return clean, fired, _drop(line, "input/empty_response", "a model turn has no text", clean)
    if fired and pii == "drop":
        return clean, fired, _drop(line, f"pii/{fired[0]}", "found: " + ", ".join(fired), clean)
    return clean, fired, None


def _drop(line: int, reason: str, detail: str, row: dict) -> dict[str, Any]:
    return {"line": line, "reason": reason, "detail": detail, "row": row}


def pair_filter(threshold: float | None = None, pii: str = "drop", scorer: Scorer | None = None,
                batch_size: int = 16) -> Callable[[list[tuple[str, str]]], list[str | None]]:
    """`sft select`'s `filter_fn`: per (prompt, response), None to keep it or the drop's reason code.
    A verdict cannot mask text, so personal data either drops the pair ("drop") or passes ("off")."""
    if pii not in ("drop", "off"):
        raise InputError(f"pair_filter: pii must be 'drop' or 'off', got {pii!r}")

    def verdicts(pairs: list[tuple[str, str]]) -> list[str | None]:
        result = filter_pairs([{"prompt": p, "response": r} for p, r in pairs], threshold, pii, scorer,
                              batch_size=batch_size)
        reasons = {d["line"]: d["reason"] for d in result.dropped}
        return [reasons.get(i) for i in range(1, len(pairs) + 1)]
    return verdicts
