"""AI feedback: a side-by-side judge labels the same pairs into the same database, marked as AI.

Its ratings are stored under the rater name "ai:<judge name>" with source "ai", so exports and
agreement reports keep them apart from human raters (or set them side by side).
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from tqdm import tqdm

from .errors import RateError
from .store import RatingStore


def _meta(judgement: Any) -> dict[str, Any]:
    """What the judge said besides its verdict (both orders' probabilities), without the item itself."""
    fields = asdict(judgement) if is_dataclass(judgement) else dict(vars(judgement))
    return {k: v for k, v in fields.items() if k not in ("item", "verdict") and v is not None}


def _prompt(pair: dict[str, Any]) -> str:
    """What the judge reads as the prompt: the text, or for a conversation every turn, labelled."""
    turns = pair["messages"]
    if not turns or len(turns) == 1:
        return pair["prompt"]
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


def label_with_judge(store: RatingStore, judge: Any, batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
    """Judges every pair this judge has not labelled yet; each batch is committed as it finishes, so an
    interrupted run resumes. `judge` follows gemmaforge.judge's protocol: a `name` and
    `judge(list[JudgeItem]) -> list[Judgement]` with `verdict` in "a", "b", "tie"."""
    from ..judge import JudgeItem

    if batch_size < 1:
        raise RateError(f"--batch-size must be >= 1, got {batch_size}")
    rater = f"ai:{judge.name}"
    todo = store.unrated_pairs(rater)
    verdicts = {"a": 0, "b": 0, "tie": 0}
    bar = tqdm(total=len(todo), desc=f"judging with {judge.name}", unit="pair", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        items = [JudgeItem(_prompt(p), p["a"], p["b"]) for p in batch]
        judgements = judge.judge(items)
        with store.transaction() as c:
            for pair, j in zip(batch, judgements, strict=True):
                if j.verdict not in verdicts:
                    raise RateError(f"judge {judge.name} answered verdict {j.verdict!r} for pair "
                                    f"{pair['pair_id']}; expected one of {', '.join(verdicts)}")
                store.add_rating(c, pair["pair_id"], rater, "ai", j.verdict, meta=_meta(j))
                verdicts[j.verdict] += 1
        bar.update(len(batch))
    bar.close()
    return {"rater": rater, "labelled": len(todo), "verdicts": verdicts}
