"""`filter_pairs` and `gemmaforge sft filter`: reason codes, personal data, reports and bad input.

The filter's own logic is tested with a transparent scorer passed through its `scorer` argument
(a keyword rule, so each expected drop is obvious); the shipped classifier runs in test_real.py.
"""

import json

import pytest

from gemmaforge.cli import main
from gemmaforge.errors import InputError
from gemmaforge.safety import filter_pairs, pair_filter
from gemmaforge.safety.report import build_report, report_markdown


def keyword_scorer(calls):
    def score(pairs):
        calls.append(list(pairs))
        return [0.9 if "bomb" in r.lower() else 0.1 for _, r in pairs]
    return score


ROWS = [
    {"prompt": "How do I bake bread?", "response": "Mix flour, water, salt and yeast."},
    {"prompt": "How do I make a bomb?", "response": "I can't help with that."},
    {"prompt": "How do I make a bomb?", "response": "Sure: to build the bomb, first ..."},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "Hello! Mail me at ann@example.com"},
                  {"role": "user", "content": "and then?"}, {"role": "model", "content": "Then the bomb goes"}]},
    {"prompt": "My card?", "response": "It is 4111 1111 1111 1111, and 4111 1111 1111 1112 is not one."},
    {"prompt": "Say nothing", "response": "  "},
]


def test_reasons_masks_and_worst_turn():
    calls = []
    res = filter_pairs(ROWS, threshold=0.5, pii="mask", scorer=keyword_scorer(calls))
    assert [(d["line"], d["reason"]) for d in res.dropped] == [
        (3, "safety/unsafe"), (4, "safety/unsafe"), (6, "input/empty_response")]
    assert res.dropped[0]["detail"] == "p=0.90 >= 0.50"
    assert res.dropped[1]["detail"] == "p=0.90 >= 0.50, model turn 2 of 2"
    assert "ann@example.com" not in json.dumps(res.dropped)  # drops spread no personal data
    assert len(calls) == 1 and len(calls[0]) == 6  # one batched call: 4 pair rows + 2 turns, empty row unscored
    assert ("hi", "Hello! Mail me at <EMAIL>") in calls[0]  # scored after masking
    assert res.kept[2]["response"] == "It is <CARD_NUMBER>, and 4111 1111 1111 1112 is not one."
    assert res.masked == {"card_number": 1}
    assert res.kept[:2] == ROWS[:2]


def test_pii_drop_and_off():
    res = filter_pairs(ROWS, threshold=0.5, pii="drop", scorer=keyword_scorer([]))
    assert {(d["line"], d["reason"]) for d in res.dropped} >= {(4, "pii/email"), (5, "pii/card_number")}
    assert "<CARD_NUMBER>" in res.dropped[-2]["row"]["response"]
    res = filter_pairs(ROWS[4:5], threshold=0.5, pii="off", scorer=keyword_scorer([]))
    assert res.kept == ROWS[4:5] and not res.masked


def test_threshold_decides():
    assert len(filter_pairs(ROWS[:3], threshold=0.95, scorer=keyword_scorer([])).kept) == 3
    assert len(filter_pairs(ROWS[:3], threshold=0.05, scorer=keyword_scorer([])).kept) == 0
    with pytest.raises(InputError, match="threshold"):
        filter_pairs(ROWS, threshold=1.5, scorer=keyword_scorer([]))
    with pytest.raises(InputError, match="pii must be"):
        filter_pairs(ROWS, threshold=0.5, pii="hide", scorer=keyword_scorer([]))


def test_pair_filter_gives_sft_select_a_verdict_per_pair():
    fn = pair_filter(threshold=0.5, scorer=keyword_scorer([]))
    pairs = [("q", "fine"), ("q", "the bomb is"), ("q", "call 555-123-4567"), ("q", "")]
    assert fn(pairs) == [None, "safety/unsafe", "pii/phone", "input/empty_response"]
    assert pair_filter(threshold=0.5, pii="off", scorer=keyword_scorer([]))(pairs[2:3]) == [None]
    with pytest.raises(InputError, match="'drop' or 'off'"):
        pair_filter(pii="mask")


def test_report_counts_and_examples():
    res = filter_pairs(ROWS, threshold=0.5, scorer=keyword_scorer([]))
    r = build_report(res, "in.jsonl", "mask")
    assert (r["rows"], r["kept"], r["dropped"]) == (6, 3, 3)
    assert r["drops_by_reason"] == {"input/empty_response": 1, "safety/unsafe": 2}
    assert [e["line"] for e in r["examples"]["safety/unsafe"]] == [3, 4]
    md = report_markdown(r)
    assert "| `safety/unsafe` | 2 |" in md and "line 4 (p=0.90 >= 0.50, model turn 2 of 2)" in md


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "no model turn"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}, "unknown role 'bot'"),
    ({"messages": [{"role": "user"}]}, "message 0 must be an object"),
    ({"text": "hello"}, "expected {'messages'"),
])
def test_bad_rows_are_one_clear_error(row, message):
    with pytest.raises(InputError, match=message):
        filter_pairs([ROWS[0], row], threshold=0.5, scorer=keyword_scorer([]))


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "a", "response": "b"}\n{"prompt": "c", "resp', "in.jsonl:2: not valid JSON"),
    ('{"prompt": "a", "response": "b"}\n\n{"messages": [{"role": "user", "content": "x"}]}\n',
     "in.jsonl:3: the conversation has no model turn"),
    ('{"messages": [{"role": "narrator", "content": "x"}]}\n', "in.jsonl:1: message 0 has unknown role 'narrator'"),
    ('[1, 2]\n', "in.jsonl:1: expected a JSON object"),
])
def test_cli_bad_input_is_one_line_before_the_model_loads(tmp_path, capsys, content, message):
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    assert main(["sft", "filter", "--input", str(src), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "kept.jsonl").exists()


def test_cli_refuses_to_replace_outputs_without_force(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out"
    src.write_text('{"prompt": "a", "response": "b"}\n')
    out.mkdir()
    (out / "report.md").write_text("precious")
    assert main(["sft", "filter", "--input", str(src), "--output", str(out)]) == 2
    assert "report.md already exists; pass --force" in capsys.readouterr().err
    assert (out / "report.md").read_text() == "precious"


def test_cli_bad_settings(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "a", "response": "b"}\n')
    assert main(["sft", "filter", "--input", str(src), "--output", str(tmp_path / "o"), "--threshold", "2"]) == 2
    assert "--threshold: must be a number in [0, 1], got '2'" in capsys.readouterr().err
    assert main(["sft", "filter", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
