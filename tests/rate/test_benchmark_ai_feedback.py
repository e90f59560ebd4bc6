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


def test_the_report_sets_both_arms_side_by_side(tmp_path):
    from types import SimpleNamespace

    import torch
    from preference_demo import report, write

    args = SimpleNamespace(folds=2, seq=64, steps=1, batch=2, rank=8, reward_lr=1e-3, dpo_lr=1e-3, beta=0.1, seed=0,
                           threads=1, ai_pairs=3, ai_tokens=8, reply_tokens=8, judge="j", judge_model=None)
    pairs = [{"prompt": p, "chosen": "c", "rejected": "r"} for p in ("p0", "p0", "p1", "p2")]
    items = torch.zeros(4, 2, 4, 8, dtype=torch.long)
    items[:, 0, 2, :3], items[:, 1, 2, :2] = 1, 1  # chosen is the longer side everywhere
    times = {"reward_train_loss": 0.6, "dpo_train_loss": 0.7, "reward_s": 1.0, "dpo_s": 2.0}
    folds = [{"held": held, "reward_diff": rd, "dpo_diff": [1.0, 1.0], "train_pairs": 2, "steps": 1, **times,
              "replies_s": 3.0, "judge_s": 4.0, "win": win,
              "ai": {"reward_diff": [1.0, 1.0], "dpo_diff": [-1.0, 0.0], "train_pairs": 5, "steps": 3, **times}}
             for held, rd, win in (([0, 1], [1.0, -1.0], {"pairs": 1, "wins": 1, "losses": 0, "ties": 0, "flips": 0}),
                                   ([2, 3], [0.0, 1.0], {"pairs": 2, "wins": 0, "losses": 1, "ties": 1, "flips": 1}))]
    ai = {"prompts": 3, "source": "sft", "responses": 6, "identical_skipped": 0, "judged": 3, "decided": 3, "ties": 0,
          "position_flipped": 0, "max_new_tokens": 8, "temperature": 1.0, "judge": "j", "fit_seq": 3, "trained": True}
    res = report(args, pairs, [0, 1, 2, 3], [0, 0, 1, 1], items, torch.tensor([[-1.0, -2.0]] * 4), folds, ai, "j",
                 {"base_logprobs": 1.0, "base_replies": 2.0, "ai_pairs": 3.0}, 0.0, [1.0])
    held = res["results"]["held-out pairs of finished folds"]
    assert list(held)[:4] == ["reward model (LoRA)", "reward model (LoRA) + AI pairs", "DPO implicit reward (LoRA)",
                              "DPO implicit reward (LoRA) + AI pairs"]
    assert held["reward model (LoRA)"]["accuracy"] == pytest.approx(2.5 / 4)
    assert held["reward model (LoRA) + AI pairs"]["accuracy"] == 1.0
    assert held["DPO implicit reward (LoRA) + AI pairs"]["accuracy"] == pytest.approx(1 / 4)
    assert res["judge_win_rate"]["win_rate"] == pytest.approx(1.5 / 3) and res["judge_win_rate"]["flips"] == 1
    write(res, tmp_path)
    md = (tmp_path / "preference_demo.md").read_text()
    assert "| reward model (LoRA) + AI pairs | 1.000 |" in md and "plus these 3 AI pairs" in md
    assert "| 1 | 5 | 3 |" in md  # fold 1 of the AI arm: 5 pairs in 3 steps
