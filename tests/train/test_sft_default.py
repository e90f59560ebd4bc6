"""The embedded default SFT set: every line renders with the real tokenizer, whole
natural-instructions tasks are held out, no duplicates, and the manifest says what is there."""

from __future__ import annotations

import gzip
import json

import pytest

import gemmaforge as gf
from gemmaforge.data.text import words
from gemmaforge.train.sft import DEFAULT_SET
from gemmaforge.train.sft_data import read_examples


def lines(name: str) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress((DEFAULT_SET / name).read_bytes()).decode().splitlines()]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DEFAULT_SET / "manifest.json").read_text())


def test_counts_sources_and_held_out_tasks(manifest):
    train, val, heldout = lines("train.jsonl.gz"), lines("val.jsonl.gz"), lines("heldout.jsonl.gz")
    assert (len(train), len(val), len(heldout)) == (manifest["train"], manifest["val"], manifest["heldout"])
    assert len(train) > 5000 and sum(manifest["sources"].values()) == len(train) + len(val)
    trained_tasks = {r["source"].split("/", 1)[1] for r in train + val if r["source"].startswith("natural_instr")}
    held = set(manifest["heldout_tasks"])
    assert len(trained_tasks) == manifest["training_tasks"] and not trained_tasks & held
    assert {h["task"] for h in heldout} == held and all(h["target"].strip() for h in heldout)
    excluded = set(manifest["tasks_from_eval_benchmarks_excluded"])
    assert excluded and all("winogrande" in t for t in excluded) and not excluded & (trained_tasks | held)
    keys = [" ".join(words(" ".join(m["content"] for m in r["messages"]))) for r in train + val]
    assert len(set(keys)) == len(keys)
    assert sum((DEFAULT_SET / f).stat().st_size for f in ("train.jsonl.gz", "val.jsonl.gz", "heldout.jsonl.gz")) < 3e6


def test_every_example_renders_with_a_trained_model_turn():
    tok = gf.load_tokenizer("gemma3-270m")
    examples = read_examples(DEFAULT_SET / "val.jsonl.gz", tok)
    assert len(examples) == len(lines("val.jsonl.gz")) and all(sum(e.mask) > 1 for e in examples)
    assert len(read_examples(DEFAULT_SET / "train.jsonl.gz", tok)) == len(lines("train.jsonl.gz"))
