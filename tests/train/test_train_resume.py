"""kill -9, Ctrl-C or SIGTERM mid-run, then --resume: the loss log is bit-for-bit the uninterrupted run's."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from train_helpers import run_pretrain, subprocess_env, write_config

from gemmaforge.train.metrics import read_rows

STEPS = 60
SETTINGS = dict(train={"max_steps": STEPS}, checkpoint={"interval": 10, "keep": 2},
                eval={"interval": 20, "blocks": 8})


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_stopped_then_resumed_matches_the_uninterrupted_run(tmp_path, sig):
    """SIGKILL loses the steps since the last checkpoint; SIGINT and SIGTERM (a scheduler's
    preemption) stop at the next step boundary and checkpoint it first, exiting 130."""
    killed_cfg = write_config(tmp_path, "killed.toml", out_dir=str(tmp_path / "killed"), **SETTINGS)
    whole_cfg = write_config(tmp_path, "whole.toml", out_dir=str(tmp_path / "whole"), **SETTINGS)
    whole = subprocess.Popen([sys.executable, "-m", "gemmaforge.train.pretrain", "--config", str(whole_cfg)],
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([sys.executable, "-m", "gemmaforge.train.pretrain", "--config", str(killed_cfg)],
                              env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "killed" / "checkpoints" / "step-00000010"
    deadline = time.monotonic() + 90
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(sig)
    stderr = victim.communicate(timeout=30)[1]
    written = sorted(p.name for p in first.parent.iterdir() if not p.name.startswith("."))
    assert written and f"step-{STEPS:08d}" not in written, written  # killed part-way, after a checkpoint
    if sig == signal.SIGKILL:
        assert victim.returncode == -signal.SIGKILL
    else:
        assert victim.returncode == 130, stderr
        stopped = re.search(rf"stopped by {sig.name} after step (\d+); checkpoint (\S+); continue with --resume",
                            stderr)
        assert stopped, stderr
        assert stopped[2].endswith(f"step-{int(stopped[1]):08d}") and stopped[2].endswith(written[-1])

    resumed = run_pretrain(killed_cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert whole.wait(timeout=120) == 0, whole.stderr.read()

    got, want = read_rows(tmp_path / "killed" / "metrics.jsonl"), read_rows(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "lr", "val_loss"):
        assert [r.get(key) for r in got] == [r.get(key) for r in want], key
