"""The local judge: both orders, probabilities read from the model's own next-token logits."""

from __future__ import annotations

import pytest
import torch

import gemmaforge as gf
from gemmaforge.judge import JudgeError, JudgeItem, LocalJudge, combine, load_judge, load_prompt

ITEMS = [
    JudgeItem("What is the capital of France?", "Paris.", "It is Lyon, a city in the south-east of France."),
    JudgeItem("def add(a, b):", "    return a + b", "    return {a: b}", reference="    return a + b"),
    JudgeItem("Say hi", "hi", "hello there, friend"),
]


def direct_share(model, tok, judge: LocalJudge, item: JudgeItem, swapped: bool) -> tuple[float, float]:
    """P("A")/(P("A")+P("B")) and P("A")+P("B") from one unpadded forward pass of the prompt alone."""
    text = tok.apply_chat_template([{"role": "user", "content": judge.prompt.render(item, swapped)}])
    ids = tok.encode(text)
    with torch.no_grad():
        logits = model(torch.tensor([ids]), logits_at="last")[0, -1].double()  # alone: no padding
    p = torch.softmax(logits, -1)[[tok.encode("A", add_bos=False)[0], tok.encode("B", add_bos=False)[0]]]
    return float(p[0] / p.sum()), float(p.sum())


def test_probabilities_are_the_label_tokens_of_a_direct_forward_in_both_orders(tiny_dir):
    model, tok = gf.load_model(tiny_dir), gf.load_tokenizer(tiny_dir)
    judge = LocalJudge(model, tok, load_prompt(), batch_size=4)  # 6 prompts of different lengths: padded batches
    out = judge.judge(ITEMS)
    assert len(out) == len(ITEMS)
    for item, j in zip(ITEMS, out):
        assert j.item is item
        share_first, mass_first = direct_share(model, tok, judge, item, swapped=False)
        share_second, mass_second = direct_share(model, tok, judge, item, swapped=True)
        assert j.p_a_first == pytest.approx(share_first, abs=1e-5)
        assert j.p_a_second == pytest.approx(1 - share_second, abs=1e-5)  # swapped: response_a is "B"
        assert j.mass_first == pytest.approx(mass_first, rel=1e-4)
        assert j.mass_second == pytest.approx(mass_second, rel=1e-4)
        assert j.verdict == combine(item, j.p_a_first, j.p_a_second).verdict
    assert len({round(j.p_a_first, 6) for j in out}) == len(ITEMS)  # the prompts really differ


def test_each_order_shows_the_responses_in_its_own_positions(tiny_dir):
    judge = load_judge(str(tiny_dir))
    item = ITEMS[1]
    first, second = (tok_text(judge, item, s) for s in (False, True))
    assert f"[Answer A]\n{item.response_a}\n" in first and f"[Answer B]\n{item.response_b}\n" in first
    assert f"[Answer A]\n{item.response_b}\n" in second and f"[Answer B]\n{item.response_a}\n" in second
    assert "[Reference answer]" in first and item.reference in first  # reference-guided mode
    assert "[Reference answer]" not in tok_text(judge, ITEMS[0], False)
    assert first.startswith("<bos><start_of_turn>user\n") and first.endswith("<start_of_turn>model\n")


def tok_text(judge: LocalJudge, item: JudgeItem, swapped: bool) -> str:
    return judge.tok.decode(judge.render(item, swapped))


@pytest.mark.parametrize("first,second,verdict", [
    (0.9, 0.7, "a"), (0.2, 0.4, "b"), (0.9, 0.2, "tie"), (0.3, 0.8, "tie"), (0.5, 0.9, "tie"), (0.5, 0.5, "tie")])
def test_orders_that_disagree_are_a_tie(first, second, verdict):
    j = combine(ITEMS[0], first, second)
    assert j.verdict == verdict
    assert j.flipped == ((first - 0.5) * (second - 0.5) < 0)


def test_user_template_replaces_the_rubric(tiny_dir, tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("Costs $$5. Q: $question\nA: $answer_a\nB: ${answer_b}\nBest?")
    judge = load_judge(str(tiny_dir), template=t)
    text = tok_text(judge, ITEMS[1], True)
    assert "user\nCosts $5. Q: def add(a, b):\nA:     return {a: b}\nB:     return a + b\nBest?<end_of_turn>" in text
    assert judge.judge(ITEMS[:1])[0].verdict in ("a", "b", "tie")


@pytest.mark.parametrize("text,message", [
    ("Q: $question A: $answer_a", "missing $answer_b"),
    ("$question $answer_a $answer_b $score", "unknown placeholder(s) $score"),
    ("$question $answer_a $answer_b\ncosts $5", "t.txt:2: a '$' that starts no placeholder"),
])
def test_bad_templates_are_one_line_errors(tmp_path, text, message):
    t = tmp_path / "t.txt"
    t.write_text(text)
    with pytest.raises(JudgeError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")):
        load_prompt(t)


def test_reference_template_needs_references(tiny_dir, tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("$question $reference $answer_a $answer_b")
    judge = load_judge(str(tiny_dir), template=t)
    assert judge.judge([ITEMS[1]])  # has a reference
    with pytest.raises(JudgeError, match="shows \\$reference, but an item has no reference"):
        judge.judge([ITEMS[0]])


def test_judge_errors(tiny_dir, tmp_path):
    with pytest.raises(JudgeError, match="judge .*nowhere: .*no such file"):
        load_judge(str(tmp_path / "nowhere"))
    with pytest.raises(JudgeError, match="--judge-model names an endpoint"):
        load_judge(str(tiny_dir), model_name="x")
    judge = load_judge(str(tiny_dir))
    long = JudgeItem("q", "word " * 3000, "b")
    with pytest.raises(JudgeError, match="more than the judge's context of 2048"):
        judge.judge([long])


@pytest.mark.real
def test_gemma3_270m_as_the_judge():
    """The real 270M judge on two items: its probabilities are its own next-token probabilities."""
    model, tok = gf.load_model("gemma3-270m"), gf.load_tokenizer("gemma3-270m")
    judge = LocalJudge(model, tok, load_prompt(), batch_size=4)
    items = [JudgeItem("What is the capital of France?", "The capital of France is Paris.", "I like turtles."),
             JudgeItem("What is 2 + 2?", "5", "2 + 2 = 4", reference="4")]
    out = judge.judge(items)
    for item, j in zip(items, out):
        share, mass = direct_share(model, tok, judge, item, swapped=False)
        assert j.p_a_first == pytest.approx(share, abs=1e-5) and j.mass_first == pytest.approx(mass, rel=1e-4)
        share, _ = direct_share(model, tok, judge, item, swapped=True)
        assert j.p_a_second == pytest.approx(1 - share, abs=1e-5)
        assert 0 < j.mass_first < 1 and 0 < j.mass_second < 1
