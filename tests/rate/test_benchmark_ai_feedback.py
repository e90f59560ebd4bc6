"""The benchmarks' AI-feedback pairs (benchmarks/ai_feedback.py) and judged win rate (head_to_head.py),
driven with a tiny model and a judge whose verdicts are known."""

import sys
from pathlib import Path

import pytest

import gemmaforge as gf
from gemmaforge.judge import JudgeItem, combine
from gemmaforge.util.jsonl import read_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ai_feedback import PROMPTS, ai_pairs  # noqa: E402
from head_to_head import pooled, tally, win_rate  # noqa: E402


class LengthJudge:
    """Shown first, the longer answer wins; shown second, only if it is longer by more than 5
    characters (otherwise the shorter one: a position flip)."""

    name = "length"

    def judge(self, items):
        out = []
        for it in items:
            diff = len(it.response_a) - len(it.response_b)
            first = 0.9 if diff > 0 else 0.1 if diff < 0 else 0.5
            second = first if abs(diff) > 5 or diff == 0 else 1 - first
            out.append(combine(it, first, second))
        return out


def test_ai_pairs_keep_only_order_stable_verdicts(tmp_path, tiny_models):
    tok = gf.load_tokenizer(tiny_models[0])
    rows, stats = ai_pairs(tmp_path / "ai.sqlite", tiny_models[0], LengthJudge(), tok, n=6, seq=200, max_new=12,
                           seed=3, batch=4)
    sft_turns = {r["messages"][0]["content"] for _, r in read_jsonl(PROMPTS)}
    assert stats["prompts"] == 6 and stats["responses"] == 12
    assert stats["judged"] + stats["identical_skipped"] == 6 and stats["decided"] == len(rows)
    assert stats["decided"] + stats["ties"] == stats["judged"]
    assert all(len(r["chosen"]) > len(r["rejected"]) + 5 and r["prompt"] in sft_turns for r in rows)
    assert stats["position_flipped"] <= stats["ties"]
    # every pair that is neither decided nor of equal length flipped with the order
    from gemmaforge.rate import RatingStore

    texts = [(r["text_a"], r["text_b"]) for r in RatingStore(tmp_path / "ai.sqlite").ratings()]
    assert stats["position_flipped"] == sum(0 < abs(len(a) - len(b)) <= 5 for a, b in texts)


def test_too_few_short_prompts_is_an_error(tmp_path, tiny_models):
    from gemmaforge.rate import RateError

    with pytest.raises(RateError, match="single-turn prompts fit 4 tokens"):
        ai_pairs(tmp_path / "ai.sqlite", tiny_models[0], LengthJudge(), gf.load_tokenizer(tiny_models[0]), n=2,
                 seq=24, max_new=16, seed=0, batch=2)


def test_win_rate_counts_ties_half_and_pools_folds():
    judge = LengthJudge()
    fold1 = tally(judge, [JudgeItem("q", "long answer", "a"), JudgeItem("q", "b", "long answer"),
                          JudgeItem("q", "same", "also"), JudgeItem("q", "abcd", "abc")])
    assert fold1 == {"pairs": 4, "wins": 1, "losses": 1, "ties": 2, "flips": 1}
    fold2 = tally(judge, [JudgeItem("q", "a very long answer", "x")])
    both = win_rate(pooled([fold1, fold2]), "length")
    assert both["pairs"] == 5 and both["win_rate"] == pytest.approx(3 / 5)
    assert both["position_flip_rate"] == pytest.approx(1 / 5)
    assert both["win_rate_ci95"][0] < 0.6 < both["win_rate_ci95"][1]


class Undecided:
    """A judge that always follows the position: every verdict flips with the order."""

    name = "position"

    def judge(self, items):
        return [combine(it, 0.8, 0.2) for it in items]


def test_a_judge_that_decides_nothing_trains_nothing_and_says_so(tmp_path, tiny_models):
    from preference_demo import ai_lines

    rows, stats = ai_pairs(tmp_path / "ai.sqlite", tiny_models[0], Undecided(), gf.load_tokenizer(tiny_models[0]),
                           n=3, seq=200, max_new=8, seed=1, batch=3)
    assert rows == [] and stats["decided"] == 0 and stats["position_flipped"] == stats["ties"] == stats["judged"] > 0
    text = "\n".join(ai_lines(stats | {"judge": "position", "fit_seq": 0, "trained": False}, {"seq": 200, "batch": 4}))
    assert f"the judge decided none of the {stats['judged']} pairs" in text and "were not trained" in text
