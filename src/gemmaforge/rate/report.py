"""What the ratings say: counts, ties, per-rater totals and agreement between raters."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from typing import Any

VERDICTS = ("a", "b", "tie", "both_bad")


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two label sequences: (observed - chance agreement) / (1 - chance).

    None when undefined: no items, or both raters always gave one and the same label (chance = 1).
    """
    n = len(first)
    if n == 0 or n != len(second):
        return None
    observed = sum(x == y for x, y in zip(first, second)) / n
    c1, c2 = Counter(first), Counter(second)
    chance = sum(c1[k] * c2[k] for k in c1) / (n * n)
    return None if chance == 1 else (observed - chance) / (1 - chance)


def agreement(ratings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Kappa on pairs rated twice: over every pair's first two ratings (by time), and per two raters."""
    by_pair: dict[int, list[dict]] = defaultdict(list)
    for r in ratings:
        by_pair[r["pair_id"]].append(r)
    twice = [rs[:2] for rs in by_pair.values() if len(rs) >= 2]
    firsts, seconds = [rs[0]["verdict"] for rs in twice], [rs[1]["verdict"] for rs in twice]
    per_raters = []
    raters = sorted({r["rater"] for r in ratings})
    verdict = {(r["rater"], r["pair_id"]): r["verdict"] for r in ratings}
    for x, y in combinations(raters, 2):
        common = sorted(p for (rater, p) in verdict if rater == x and (y, p) in verdict)
        if common:
            a, b = [verdict[x, p] for p in common], [verdict[y, p] for p in common]
            per_raters.append({"raters": [x, y], "pairs": len(common),
                               "agreement": sum(i == j for i, j in zip(a, b)) / len(common),
                               "kappa": cohen_kappa(a, b)})
    return {"pairs_rated_twice": len(twice), "kappa": cohen_kappa(firsts, seconds),
            "agreement": (sum(i == j for i, j in zip(firsts, seconds)) / len(twice)) if twice else None,
            "per_rater_pair": per_raters}


def summarize(ratings: Sequence[dict[str, Any]], written: int) -> dict[str, Any]:
    """The export report; agreement is computed separately for human raters and for AI judges."""
    per_rater: dict[str, Counter] = defaultdict(Counter)
    for r in ratings:
        per_rater[r["rater"]][r["verdict"]] += 1
    verdicts = Counter(r["verdict"] for r in ratings)
    return {
        "ratings": len(ratings), "written": written,
        "pairs_rated": len({r["pair_id"] for r in ratings}),
        "verdicts": {v: verdicts[v] for v in VERDICTS},
        "by_source": dict(Counter(r["source"] for r in ratings)),
        "per_rater": {k: {"total": sum(c.values()), **{v: c[v] for v in VERDICTS}}
                      for k, c in sorted(per_rater.items())},
        "agreement_human": agreement([r for r in ratings if r["source"] == "human"]),
        "agreement_all": agreement(ratings),
    }


def format_report(report: dict[str, Any]) -> str:
    v = report["verdicts"]
    lines = [f"{report['ratings']} ratings of {report['pairs_rated']} pairs: {v['a'] + v['b']} preferences, "
             f"{v['tie']} ties, {v['both_bad']} both bad; {report['written']} rows written",
             "by source: " + ", ".join(f"{k} {n}" for k, n in sorted(report["by_source"].items())),
             "per rater:"]
    lines += [f"  {name}: {c['total']} (a {c['a']}, b {c['b']}, tie {c['tie']}, both bad {c['both_bad']})"
              for name, c in report["per_rater"].items()]
    for label, key in (("human raters", "agreement_human"), ("all raters incl. AI", "agreement_all")):
        a = report[key]
        kappa = "n/a" if a["kappa"] is None else f"{a['kappa']:.3f}"
        lines.append(f"agreement, {label}: {a['pairs_rated_twice']} pairs rated twice, Cohen's kappa {kappa}")
        for p in a["per_rater_pair"]:
            k = "n/a" if p["kappa"] is None else f"{p['kappa']:.3f}"
            lines.append(f"  {p['raters'][0]} vs {p['raters'][1]}: {p['pairs']} pairs, "
                         f"agree {p['agreement']:.0%}, kappa {k}")
    return "\n".join(lines)
