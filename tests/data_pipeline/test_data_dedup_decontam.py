"""Exact and MinHash near-duplicate detection, and n-gram decontamination against an eval export."""

import json
import re

import numpy as np
import pytest

from gemmaforge.data import DataError, EvalNgrams, MinHasher, exact_key, near_duplicates
from gemmaforge.data.text import text_ngram_hashes, words
from gemmaforge.eval.decontam import write_ngrams


def _shuffle_sentences(text: str, seed: int) -> str:
    """The kind of near-duplicate the OpenWebText excerpts hold: the same sentences re-ordered."""
    sents = re.split(r"(?<=\.)\s+", " ".join(text.split()))
    return " ".join(sents[i] for i in np.random.default_rng(seed).permutation(len(sents)))


def _jaccard(a: str, b: str, n: int = 5) -> float:
    x, y = set(text_ngram_hashes(a, n).tolist()), set(text_ngram_hashes(b, n).tolist())
    return len(x & y) / len(x | y)


def test_exact_key_ignores_case_and_whitespace(prose):
    assert exact_key(prose[0]) == exact_key("  " + prose[0].upper().replace(" ", "\n  "))
    assert exact_key(prose[0]) != exact_key(prose[1])


def test_minhash_estimates_jaccard(prose):
    mh = MinHasher(num_perm=256, seed=1)
    pairs = [(prose[i], _shuffle_sentences(prose[i], i)) for i in range(10)] + [(prose[0], prose[1])]
    for a, b in pairs:
        est = float(np.mean(mh.signature(a) == mh.signature(b)))
        assert abs(est - _jaccard(a, b)) < 0.1


def test_near_duplicates_found_deterministically(prose):
    long = [i for i in range(40) if len(prose[i].split()) > 150][:5]
    docs, origin = list(prose[:40]), {}
    for i in long:  # a sentence re-ordering and a light edit of real documents
        origin[len(docs)] = origin[len(docs) + 1] = i
        docs += [_shuffle_sentences(prose[i], i), prose[i].replace("the", "a", 2)]
    for seed in (0, 1):
        mh = MinHasher(100, seed=seed)
        sigs = [mh.signature(d) for d in docs]
        dups = near_duplicates(sigs, bands=20, rows=5, threshold=0.5)
        assert {k for k in origin if k % 2} <= set(dups)  # every light edit is caught
        assert all(v < k for k, v in dups.items())  # the earliest document of a cluster is kept
        # Every merge is a real near-duplicate (the stdlib has some: json.dump and json.dumps docs) of
        # some member of its cluster: clusters link transitively and keep their earliest document.
        clusters = {v: [v] + [k for k, w in dups.items() if w == v] for v in set(dups.values())}
        assert all(any(_jaccard(docs[k], docs[j]) > 0.4 for j in clusters[v] if j != k) for k, v in dups.items())
        assert all(dups.get(k, origin[k]) in (origin[k], min(dups.get(origin[k], origin[k]), origin[k]))
                   for k in origin)
        assert dups == near_duplicates(sigs, bands=20, rows=5, threshold=0.5)
    assert MinHasher(8).signature("too short") is None


@pytest.fixture
def export(tmp_path, prose):
    """An eval-harness n-gram export with two items taken from real text."""
    def grams(text, n=13):
        ws = words(text)
        return [" ".join(ws[i:i + n]) for i in range(0, len(ws) - n + 1, 5)]
    index = {"mmlu/17": set(grams(prose[3])), "gsm8k/4": set(grams(prose[4])[:3]), "arc/1": set(),
             "boolq/9": {"a short question of nine words in all"}}  # shorter than n: whole
    return write_ngrams(index, tmp_path / "ngrams.jsonl")


def test_decontamination_reports_matching_items(export, prose):
    idx = EvalNgrams.load(export)
    leaked = "Some forum post quoting a test question: " + prose[4].upper() + " and more about " + prose[3]
    count, items = idx.matches(leaked)
    assert items == ["gsm8k/4", "mmlu/17"] and count >= 4
    assert idx.matches(prose[5]) == (0, [])
    assert idx.matches("Is this A short question, of nine words in all?") == (1, ["boolq/9"])


def test_decontamination_export_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    for content, msg in [("{not json", r"bad.jsonl:1: not valid JSON"),
                         (json.dumps({"n": 13}), "needs a string 'item'"),
                         ("", "expected lines"),
                         (json.dumps({"item": "t/1", "n": 3, "ngrams": ["one two three four"]}),
                          "not 1 to 3 normalised words")]:
        bad.write_text(content)
        with pytest.raises(DataError, match=msg):
            EvalNgrams.load(bad)
    with pytest.raises(DataError, match="No such file"):
        EvalNgrams.load(tmp_path / "missing.json")
