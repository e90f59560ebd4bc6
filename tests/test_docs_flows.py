"""Every multi-step flow in the README and docs/ runs, step after step as written, from a clean
directory: a code block whose first line is `# flow: NAME` is a flow. Sizes shrink only through the
documented flags below, appended per verb, so a broken chain between verbs fails here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALLER = {  # verb -> documented flags that shrink the work (see each verb's --help)
    ("data", "demo"): ["--max-mb", "1", "--no-progress"],
    ("pretrain",): ["--max-steps", "3", "--no-compile"],
    ("generate",): ["--max-new-tokens", "4"],
    ("rate", "import"): ["--limit", "8"],
    ("rate", "ai-label"): ["--no-progress"],
    ("reward", "train"): ["--max-steps", "1", "--global-batch", "2", "--micro-batch", "1"],
    ("dpo",): ["--max-steps", "1", "--global-batch", "2", "--micro-batch", "1"],
}


def flows() -> list[tuple[str, list[str]]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            lines = block.splitlines()
            if lines and lines[0].startswith("# flow:"):
                steps = [line.split("  #")[0].strip() for line in lines[1:]
                         if line.strip() and not line.startswith("#")]
                found.append((f"{doc.name}: {lines[0][7:].strip()}", steps))
    return found


FLOWS = flows()


def test_the_docs_have_flows():
    names = " | ".join(name for name, _ in FLOWS)
    for flow in ("pretrain quick start", "pipeline quick", "preferences, reward model and DPO",
                 "human and AI labels on the same pairs"):
        assert flow in names


@pytest.mark.parametrize("name, steps", FLOWS, ids=[n for n, _ in FLOWS])
def test_flow_runs_step_after_step(name, steps, tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # what a fresh clone has beside the docs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for step in steps:
        argv = shlex.split(step)
        assert argv[0] == "gemmaforge", f"{name}: flows run gemmaforge commands, got {step!r}"
        verb = tuple(argv[1:3]) if tuple(argv[1:3]) in SMALLER else tuple(argv[1:2])
        cmd = [sys.executable, "-m", "gemmaforge", *argv[1:], *SMALLER.get(verb, [])]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{name}: `{step}` failed:\n{done.stderr[-3000:]}"
