"""Two models' greedy chat replies to the same prompts, judged side by side: the benchmarks' win rate.

Shared by sft_demo.py and preference_demo.py so both report the same statistic: each pair is judged
in both orders (gemmaforge.judge), a verdict that changes with the order is a tie, a tie counts one
half, and the interval is Wilson's. Counts add up, so folds are pooled by summing their tallies.
"""

from __future__ import annotations

from collections.abc import Mapping

from gemmaforge.inference.generate import Decoder
from gemmaforge.judge import Judge, JudgeItem
from gemmaforge.selection.summary import wilson

COUNTS = ("pairs", "wins", "losses", "ties", "flips")


def replies(model, tok, prompts: list[str], max_new: int, batch: int = 8) -> list[tuple[str, bool]]:
    """(reply, ended with <end_of_turn>) for each prompt, greedy, in the chat format."""
    out = []
    for s in range(0, len(prompts), batch):
        ids = [tok.render_chat([{"role": "user", "content": p}], add_generation_prompt=True)[0]
               for p in prompts[s:s + batch]]
        dec = Decoder(model, ids, max_new, stop_ids=[tok.end_of_turn_id, tok.eos_id], truncate=True)
        rows: list[list[int]] = [[] for _ in ids]
        for step in dec:
            for r, t in enumerate(step):
                if t is not None:
                    rows[r].append(t)
        out += [(tok.decode([t for t in r if t != tok.end_of_turn_id]), bool(r) and r[-1] == tok.end_of_turn_id)
                for r in rows]
    return out


def tally(judge: Judge, items: list[JudgeItem]) -> dict[str, int]:
    """How often response_a (the model under test) won, lost and tied, and how often the two orders
    disagreed (a position flip, counted as a tie)."""
    out = judge.judge(items)
    wins, losses = sum(j.verdict == "a" for j in out), sum(j.verdict == "b" for j in out)
    return {"pairs": len(out), "wins": wins, "losses": losses, "ties": len(out) - wins - losses,
            "flips": sum(j.flipped for j in out)}


def win_rate(counts: Mapping[str, int], judge: str) -> dict:
    """A's win rate (ties one half) and the position-flip rate, each with its Wilson 95% interval."""
    n, score = counts["pairs"], counts["wins"] + counts["ties"] / 2
    return {"judge": judge, **{k: counts[k] for k in COUNTS},
            "win_rate": score / n if n else None, "win_rate_ci95": list(wilson(score, n)),
            "position_flip_rate": counts["flips"] / n if n else None,
            "position_flip_rate_ci95": list(wilson(counts["flips"], n))}


def pooled(tallies: list[Mapping[str, int]]) -> dict[str, int]:
    """The tallies of several folds as one."""
    return {k: sum(t[k] for t in tallies) for k in COUNTS}
