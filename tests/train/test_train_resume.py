"""kill -9 mid-run, then --resume: the loss log is bit-for-bit the uninterrupted run's."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from train_helpers import run_pretrain, subprocess_env, write_config

from gemmaforge.train.metrics import read_rows

STEPS = 60
SETTINGS = dict(train={"max_steps": STEPS}, checkpoint={"interval": 10, "keep": 2},
                eval={"interval": 20, "blocks": 8})


def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path):
    killed_cfg = write_config(tmp_path, "killed.toml", out_dir=str(tmp_path / "killed"), **SETTINGS)
    whole_cfg = write_config(tmp_path, "whole.toml", out_dir=str(tmp_path / "whole"), **SETTINGS)
    whole = subprocess.Popen([sys.executable, "-m", "gemmaforge.train.pretrain", "--config", str(whole_cfg)],
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([sys.executable, "-m", "gemmaforge.train.pretrain", "--config", str(killed_cfg)],
                              env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "killed" / "checkpoints" / "step-00000010"
    deadline = time.monotonic() + 90
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    written = sorted(p.name for p in first.parent.iterdir() if not p.name.startswith("."))
    assert written and f"step-{STEPS:08d}" not in written, written  # killed part-way, after a checkpoint

    resumed = run_pretrain(killed_cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr
    assert whole.wait(timeout=120) == 0, whole.stderr.read()

    got, want = read_rows(tmp_path / "killed" / "metrics.jsonl"), read_rows(tmp_path / "whole" / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "lr", "val_loss"):
        assert [r.get(key) for r in got] == [r.get(key) for r in want], key
