"""The harness on the shipped gemma3-270m: a few items, end to end (marked `real`)."""

from __future__ import annotations

import json

import pytest

from gemmaforge.eval import run_eval
from gemmaforge.eval.sandbox import SandboxConfig

pytestmark = pytest.mark.real


def test_real_model_scores_arc_and_runs_humaneval(tmp_path):
    res = run_eval("gemma3-270m", ["arc_easy", "humaneval"], limit=3, output_dir=str(tmp_path),
                   sandbox=SandboxConfig(timeout_s=10))
    arc = [json.loads(line) for line in (tmp_path / "samples_arc_easy.jsonl").read_text().splitlines()]
    # Real log-likelihoods: finite, negative, and different across choices.
    lls = [o["logprob"] for s in arc for o in s["output"]]
    assert all(-200 < ll < 0 for ll in lls) and len(set(lls)) == len(lls)
    he = [json.loads(line) for line in (tmp_path / "samples_humaneval.jsonl").read_text().splitlines()]
    assert len(he) == 3 and all(s["extra"]["runs"][0]["status"] in ("passed", "failed", "timeout") for s in he)
    assert 0.0 <= res["humaneval"].metrics["pass@1"].value <= 1.0
