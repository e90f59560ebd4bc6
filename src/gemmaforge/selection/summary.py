"""What a selection run found: win rates with Wilson intervals, ties, and how often the judge
followed the position instead of the content."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved at 0, 1 and small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(judgements: Sequence[dict[str, Any]], candidates: Sequence[str], selected: dict[str, int],
              dropped: dict[str, int], n_prompts: int, judge: str) -> dict[str, Any]:
    """Statistics over judgement records (as written to judgements.jsonl)."""
    per = {c: {"games": 0, "wins": 0, "losses": 0, "ties": 0} for c in candidates}
    judged = [j for j in judgements if not j.get("identical")]
    for j in judgements:
        a, b, v = j["candidate_a"], j["candidate_b"], j["verdict"]
        for c in (a, b):
            per[c]["games"] += 1
        if v == "tie":
            per[a]["ties"] += 1
            per[b]["ties"] += 1
        else:
            winner, loser = (a, b) if v == "a" else (b, a)
            per[winner]["wins"] += 1
            per[loser]["losses"] += 1
    for c, s in per.items():
        lo, hi = wilson(s["wins"], s["games"])
        s["win_rate"] = s["wins"] / s["games"] if s["games"] else None
        s["win_rate_ci95"] = [lo, hi]
        s["score"] = (s["wins"] + s["ties"] / 2) / s["games"] if s["games"] else None
        s["selected"] = selected.get(c, 0)
    n = len(judged)
    flips = sum(1 for j in judged if _flipped(j))
    ties = sum(1 for j in judged if j["verdict"] == "tie")
    # Each order of each pair is one decision: did the response shown first win it?
    decisions = [p for j in judged for p in (j["p_a_first"], 1 - j["p_a_second"]) if p != 0.5]
    first_wins = sum(1 for p in decisions if p > 0.5)
    masses = [m for j in judged for m in (j.get("mass_first"), j.get("mass_second")) if m is not None]
    return {
        "judge": judge,
        "prompts": n_prompts,
        "pairs_judged": n,
        "identical_pairs": len(judgements) - n,
        "tie_rate": ties / n if n else None,
        "position_flip_rate": flips / n if n else None,
        "position_flip_rate_ci95": list(wilson(flips, n)),
        "first_position_win_rate": first_wins / len(decisions) if decisions else None,
        "first_position_win_rate_ci95": list(wilson(first_wins, len(decisions))),
        "mean_label_mass": sum(masses) / len(masses) if masses else None,
        "interval": "Wilson score interval, 95%; win rate = wins / games, a tie counts as no win",
        "candidates": per,
        "selected_pairs": sum(selected.values()),
        "dropped": dropped,
    }


def _flipped(j: dict[str, Any]) -> bool:
    return (j["p_a_first"] - 0.5) * (j["p_a_second"] - 0.5) < 0


def markdown(s: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = ["# Selection summary", "",
             f"Judge: `{s['judge']}`; {s['prompts']} prompts, {s['pairs_judged']} pairs judged in both orders"
             f" ({s['identical_pairs']} pairs of identical responses counted as ties without judging).", "",
             "| candidate | games | wins | ties | losses | win rate (95% CI) | score | selected |",
             "|---|---|---|---|---|---|---|---|"]
    for name, c in s["candidates"].items():
        lo, hi = c["win_rate_ci95"]
        lines.append(f"| `{name}` | {c['games']} | {c['wins']} | {c['ties']} | {c['losses']} | "
                     f"{pct(c['win_rate'])} ({pct(lo)}–{pct(hi)}) | {pct(c['score'])} | {c['selected']} |")
    flo, fhi = s["position_flip_rate_ci95"]
    plo, phi = s["first_position_win_rate_ci95"]
    lines += ["", f"- tie rate: {pct(s['tie_rate'])}",
              f"- position-flip rate (the two orders preferred different responses): "
              f"{pct(s['position_flip_rate'])} ({pct(flo)}–{pct(fhi)})",
              f"- the response shown first won {pct(s['first_position_win_rate'])} of single-order decisions "
              f"({pct(plo)}–{pct(phi)}; 50% = no position bias)",
              f"- mean probability the judge put on the answer labels: {pct(s['mean_label_mass'])}",
              f"- {s['interval']}; score = (wins + ties/2) / games",
              f"- selected pairs: {s['selected_pairs']}"]
    if s["dropped"]:
        lines.append("- dropped by the filter: " + ", ".join(f"{k}: {v}" for k, v in sorted(s["dropped"].items())))
    return "\n".join(lines) + "\n"
