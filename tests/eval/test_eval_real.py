"""The harness on the shipped gemma3-270m: a few items, end to end (marked `real`).

Kept small: full HumanEval problems may generate 512 tokens each, so the generation and sandbox
path is exercised with a user code task capped at 48 new tokens."""

from __future__ import annotations

import json

import pytest

from gemmaforge.eval import run_eval
from gemmaforge.eval.sandbox import SandboxConfig

pytestmark = pytest.mark.real


def test_real_model_scores_arc_and_runs_generated_code(tmp_path):
    code_task = tmp_path / "add.jsonl"
    code_task.write_text(json.dumps({
        "type": "code", "max_new_tokens": 48,
        "prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
        "test": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"}) + "\n")
    res = run_eval("gemma3-270m", ["arc_easy", str(code_task)], limit=3, output_dir=str(tmp_path / "out"),
                   sandbox=SandboxConfig(timeout_s=10))
    arc = [json.loads(line) for line in (tmp_path / "out" / "samples_arc_easy.jsonl").read_text().splitlines()]
    # Real log-likelihoods: finite, negative, and different across choices.
    lls = [o["logprob"] for s in arc for o in s["output"]]
    assert len(arc) == 3 and all(-200 < ll < 0 for ll in lls) and len(set(lls)) == len(lls)
    (sample,) = [json.loads(line) for line in (tmp_path / "out" / "samples_add.jsonl").read_text().splitlines()]
    assert sample["output"][0].strip()  # the model wrote something, cut at a stop string
    assert sample["extra"]["runs"][0]["status"] in ("passed", "failed")
    assert res["add"].metrics["pass@1"].value == float(sample["extra"]["runs"][0]["status"] == "passed")
