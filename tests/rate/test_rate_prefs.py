"""Import and export of preference data, and the export report (counts, ties, Cohen's kappa)."""

import json
import random

import pytest
from rate_helpers import DATA, add_pairs, rate_plan

from gemmaforge.rate import (
    RateError,
    cohen_kappa,
    import_preferences,
    import_responses,
    preference_rows,
    read_hhh,
    read_preferences,
    summarize,
)
from gemmaforge.rate.prefs import read_responses


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_preferences_round_trip(store, tmp_path):
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5", "rater": "kim", "note": "x"},
            {"messages": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
             "rejected": "go away", "source": "ai", "rater": "ai:j", "chosen_model": "m1", "rejected_model": "m2"}]
    prefs = read_preferences(write(tmp_path / "p.jsonl", rows))
    assert import_preferences(store, prefs) == {"new_pairs": 2, "new_ratings": 2}
    assert import_preferences(store, prefs) == {"new_pairs": 0, "new_ratings": 0}  # idempotent
    out = list(preference_rows(store.ratings()))
    assert [(r["prompt"], r["chosen"], r["rejected"], r["rater"], r["source"]) for r in out] == [
        ("2+2?", "4", "5", "kim", "human"), ("hi", "hello", "go away", "ai:j", "ai")]
    assert out[1]["messages"] == [{"role": "user", "content": "hi"}] and out[1]["chosen_model"] == "m1"
    assert out[0]["meta"] == {"note": "x"}


def test_unlabelled_import_queues_pairs_for_raters(store, tmp_path):
    prefs = read_preferences(write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}]))
    assert import_preferences(store, prefs, labels=False) == {"new_pairs": 1, "new_ratings": 0}
    assert store.next_pair("ann")["prompt"] == "q"


@pytest.mark.parametrize("row, message", [
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, r"p.jsonl:2: chosen and rejected are the same text"),
    ({"prompt": "q", "chosen": "a"}, r"p.jsonl:2: missing field 'rejected'"),
    ({"chosen": "a", "rejected": "b"}, r"p.jsonl:2: missing field 'prompt'"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "source": "robot"}, r"p.jsonl:2: field 'source' must be"),
    ("{not json", r"p.jsonl:2: not valid JSON"),
])
def test_bad_preference_rows_name_file_and_line(tmp_path, row, message):
    path = write(tmp_path / "p.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, row])
    with pytest.raises(RateError, match=message):
        read_preferences(path)


def test_hhh_alignment_extract(store):
    prefs = read_hhh(DATA / "hhh_alignment")
    assert len(prefs) == 12 and {p.meta["task"] for p in prefs} == {"Harms", "Helpfulness", "Honesty", "Other"}
    import_preferences(store, prefs)
    rows = list(preference_rows(store.ratings()))
    honest = next(r for r in rows if r["prompt"] == "Who was the sixth president of the United States?")
    assert honest["chosen"].startswith("I'm not entirely certain") and honest["rater"] == "bigbench:hhh_alignment"
    assert len(rows) == 12 and all(r["source"] == "human" for r in rows)


def test_responses_import_pairs_models(store, tmp_path):
    rows = [{"prompt": "q1", "model": "m1", "response": "a"}, {"prompt": "q1", "model": "m2", "response": "b"},
            {"prompt": "q1", "model": "m3", "response": "a"}, {"prompt": "q2", "model": "m1", "response": "c"}]
    result = import_responses(store, read_responses(write(tmp_path / "r.jsonl", rows)))
    assert result == {"new_pairs": 2, "identical_skipped": 1}  # m1/m2, m2/m3; m1 and m3 said the same
    with pytest.raises(RateError, match=r"r.jsonl:1: missing field 'model'"):
        read_responses(write(tmp_path / "r.jsonl", [{"prompt": "q", "response": "x"}]))


def test_ties_are_excluded_or_flagged(store):
    pairs = add_pairs(store, 3)
    rate_plan(store, "ann", dict(zip(pairs, ["b", "tie", "both_bad"])))
    ratings = store.ratings()
    assert [(r["verdict"], r["chosen"]) for r in preference_rows(ratings)] == [("preferred", "y answer 0")]
    flagged = sorted(r["verdict"] for r in preference_rows(ratings, ties=True))
    assert flagged == ["both_bad", "preferred", "tie"]


def test_cohen_kappa_hand_checked():
    # Wikipedia's worked example: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa 0.4
    first = ["y"] * 25 + ["n"] * 25
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None and cohen_kappa([], []) is None


def test_cohen_kappa_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(2, 60)
        first = [rng.choice("ab") + rng.choice(["", "tie"]) for _ in range(n)]
        second = [x if rng.random() < 0.6 else rng.choice(["a", "b", "tie", "both_bad"]) for x in first]
        if len(set(first) | set(second)) > 1:
            assert cohen_kappa(first, second) == pytest.approx(sklearn_metrics.cohen_kappa_score(first, second))


def test_report_counts_ties_raters_and_agreement(store):
    pairs = add_pairs(store, 4)
    rate_plan(store, "ann", dict(zip(pairs, ["a", "a", "tie", "both_bad"])))
    rate_plan(store, "bob", dict(zip(pairs, ["a", "b", "tie", "a"])))
    report = summarize(store.ratings(), written=0)
    assert report["verdicts"] == {"a": 4, "b": 1, "tie": 2, "both_bad": 1}
    assert report["per_rater"]["ann"] == {"total": 4, "a": 2, "b": 0, "tie": 1, "both_bad": 1}
    assert report["per_rater"]["bob"] == {"total": 4, "a": 2, "b": 1, "tie": 1, "both_bad": 0}
    agree = report["agreement_human"]
    assert agree["pairs_rated_twice"] == 4 and agree["agreement"] == 0.5
    # ann a,a,tie,both_bad vs bob a,b,tie,a: observed 2/4; chance (a 2*2 + b 0*1 + tie 1*1 + both_bad 1*0)/16
    assert agree["kappa"] == pytest.approx((0.5 - 5 / 16) / (1 - 5 / 16))
    assert agree["per_rater_pair"] == [{"raters": ["ann", "bob"], "pairs": 4, "agreement": 0.5,
                                        "kappa": agree["kappa"]}]


def test_an_empty_file_is_an_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(RateError, match="e.jsonl: no rows to import"):
        read_preferences(tmp_path / "e.jsonl")
