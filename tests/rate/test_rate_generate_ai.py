"""Responses generated ahead of time with the real engine, and AI labels from a judge."""

import json
import sys
import types
from dataclasses import dataclass

import pytest
from rate_helpers import add_pairs

import gemmaforge as gf
from gemmaforge.rate import GenerationSettings, Prompt, RateError, RatingStore, generate_responses, label_with_judge
from gemmaforge.rate.prompts import chat_prompt


def test_generation_matches_the_engine_and_resumes(store, tiny_models):
    prompts = [Prompt("def f(x):"), Prompt("import os"), chat_prompt([{"role": "user", "content": "hello"}], "t")]
    settings = GenerationSettings(max_new_tokens=5, batch_size=2)
    assert generate_responses(store, prompts, tiny_models, settings, progress=False) == 6
    assert generate_responses(store, prompts, tiny_models, settings, progress=False) == 0  # resumes: nothing left
    model, tok = gf.load_model(tiny_models[1]), gf.load_tokenizer(tiny_models[1])
    chat_text = tok.apply_chat_template([{"role": "user", "content": "hello"}])
    expected = gf.generate(model, tok, ["def f(x):", "import os"], max_new_tokens=5) + \
        gf.generate(model, tok, [tok.encode(chat_text)], max_new_tokens=5)
    with store.connect() as c:
        got = [r[0] for r in c.execute("SELECT text FROM responses WHERE model = ? ORDER BY prompt_id",
                                       (tiny_models[1],))]
        meta = json.loads(c.execute("SELECT meta FROM responses LIMIT 1").fetchone()[0])
    assert got == expected and meta["generation"]["max_new_tokens"] == 5
    added, identical = store.pair_models(tiny_models)
    assert added + identical == 3 and store.counts()["pairs"] == added


@dataclass(frozen=True)
class FakeJudgement:
    item: object
    p_a_first: float
    p_a_second: float
    verdict: str


class FakeJudge:
    """Prefers the longer response, and says "tie" when they are equally long (the protocol's verdicts)."""

    name = "longest"

    def __init__(self, verdict=None):
        self.calls, self.verdict, self.seen = 0, verdict, []

    def judge(self, items):
        self.calls += 1
        self.seen += items
        out = []
        for it in items:
            diff = len(it.response_a) - len(it.response_b)
            p = 0.9 if diff > 0 else 0.1 if diff < 0 else 0.5
            out.append(FakeJudgement(it, p, p, self.verdict or ("a" if diff > 0 else "b" if diff < 0 else "tie")))
        return out


@pytest.fixture
def judge_module(monkeypatch):
    """gemmaforge.judge when it exists; otherwise a stand-in holding only its JudgeItem type."""
    try:
        import gemmaforge.judge  # noqa: F401
    except ImportError:
        module = types.ModuleType("gemmaforge.judge")

        @dataclass(frozen=True)
        class JudgeItem:
            prompt: str
            response_a: str
            response_b: str
            reference: str | None = None

        module.JudgeItem = JudgeItem
        monkeypatch.setitem(sys.modules, "gemmaforge.judge", module)


def test_ai_labels_go_to_the_same_database_marked_as_ai(store, judge_module):
    pairs = add_pairs(store, 5)
    with store.transaction() as c:  # one pair whose b is longer
        store.add_rating(c, pairs[0], "kim", "human", "a")
    with store.connect() as c:
        c.execute("UPDATE responses SET text = 'a much longer y answer' WHERE id = "
                  "(SELECT response_b FROM pairs WHERE id = ?)", (pairs[1],))
    judge = FakeJudge()
    result = label_with_judge(store, judge, batch_size=2, progress=False)
    assert result == {"rater": "ai:longest", "labelled": 5, "verdicts": {"a": 0, "b": 1, "tie": 4}}
    assert judge.calls == 3
    ai = [r for r in store.ratings() if r["source"] == "ai"]
    assert len(ai) == 5 and {r["rater"] for r in ai} == {"ai:longest"}
    assert json.loads(next(r for r in ai if r["pair_id"] == pairs[1])["meta"]) == {"p_a_first": 0.1, "p_a_second": 0.1}
    assert label_with_judge(store, judge, progress=False)["labelled"] == 0  # done pairs are not judged again
    assert store.progress("kim")["rated"] == 1  # humans' ratings untouched


def test_a_judge_answering_nonsense_stops_cleanly(store, judge_module):
    add_pairs(store, 2)
    with pytest.raises(RateError, match="answered verdict 'maybe'"):
        label_with_judge(store, FakeJudge("maybe"), progress=False)
    assert store.ratings() == []


def test_sampled_responses_do_not_depend_on_the_batch(tmp_path, tiny_models):
    prompts = [Prompt("def f(x):"), Prompt("import os"), Prompt("class A:")]
    texts = []
    for batch_size in (1, 3):
        store = RatingStore(tmp_path / f"b{batch_size}.sqlite")
        settings = GenerationSettings(max_new_tokens=6, batch_size=batch_size, temperature=1.0, seed=7)
        generate_responses(store, prompts, tiny_models[:1], settings, progress=False)
        with store.connect() as c:
            texts.append([r[0] for r in c.execute("SELECT text FROM responses ORDER BY prompt_id")])
    assert texts[0] == texts[1] and len(set(texts[0])) == 3


def test_the_judge_reads_a_whole_conversation(store, judge_module):
    turns = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
             {"role": "user", "content": "Another?"}]
    with store.transaction() as c:
        pid = store.add_prompt(c, chat_prompt(turns, "t"))
        store.add_pair(c, pid, store.add_response(c, pid, "m1", "Red."), store.add_response(c, pid, "m2", "Green."))
    judge = FakeJudge()
    label_with_judge(store, judge, progress=False)
    assert judge.seen[0].prompt == "User: Name a colour.\n\nAssistant: Blue.\n\nUser: Another?"


def test_one_model_sampled_twice_under_two_names_makes_pairs(store, tiny_models):
    prompts = [Prompt("def f(x):"), Prompt("import os")]
    for seed in (1, 2):
        settings = GenerationSettings(max_new_tokens=6, temperature=1.0, seed=seed)
        assert generate_responses(store, prompts, tiny_models[:1], settings, progress=False,
                                  names=[f"sample {seed}"]) == 2
    assert generate_responses(store, prompts, tiny_models[:1], settings, progress=False, names=["sample 2"]) == 0
    with store.connect() as c:
        rows = c.execute("SELECT model, text FROM responses ORDER BY prompt_id, model").fetchall()
    assert [r[0] for r in rows] == ["sample 1", "sample 2"] * 2 and rows[0][1] != rows[1][1]
    assert store.pair_models(["sample 1", "sample 2"]) == (2, 0)
    with pytest.raises(RateError, match="2 names for 1 models"):
        generate_responses(store, prompts, tiny_models[:1], settings, progress=False, names=["x", "y"])
