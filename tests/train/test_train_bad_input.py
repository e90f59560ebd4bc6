"""Bad input stops the run with one clear line, before any work is lost."""

from __future__ import annotations

import pytest
import torch
from small_disk import small_disk
from train_helpers import write_config

from gemmaforge.train.data import StepBatches
from gemmaforge.train.metrics import read_rows
from gemmaforge.train.pretrain import main
from gemmaforge.train.schedule import warmup_cosine


def fails(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gemmaforge pretrain: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_preset(tmp_path, capsys):
    config = write_config(tmp_path, model={"preset": "gemma-42b"})
    assert "model.preset: unknown preset 'gemma-42b'" in fails(capsys, "--config", str(config))


def test_unreadable_data_path(tmp_path, capsys):
    config = write_config(tmp_path, data={"train": str(tmp_path / "missing.bin")})
    err = fails(capsys, "--config", str(config))
    assert "data.train:" in err and "missing.bin does not exist" in err


def test_resume_from_a_checkpoint_of_another_config(tmp_path, capsys):
    config = write_config(tmp_path, train={"max_steps": 3})
    assert main(["--config", str(config)]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003"
    before = {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()}

    config = write_config(tmp_path, model={"preset": "tiny-gemma-mqa", "d_model": 96}, train={"max_steps": 6})
    err = fails(capsys, "--config", str(config), "--resume")
    assert "written by a different run" in err and "model.d_model: 64 there, 96 here" in err
    assert {p.name: p.stat().st_mtime_ns for p in checkpoint.iterdir()} == before  # untouched


def test_a_fresh_run_will_not_overwrite_existing_checkpoints(tmp_path, capsys):
    config = write_config(tmp_path, train={"max_steps": 3})
    assert main(["--config", str(config)]) == 0
    assert "pass --resume" in fails(capsys, "--config", str(config))


@pytest.mark.parametrize("argv", [[], ["--config"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_an_out_dir_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    config = write_config(tmp_path, out_dir=str(tmp_path / "a_file" / "run"))
    assert "out_dir: cannot write to" in fails(capsys, "--config", str(config))


def test_seq_len_beyond_the_models_context(tmp_path, capsys):
    config = write_config(tmp_path, model={"preset": "tiny-gemma-mqa", "max_seq_len": 16})
    assert "data.seq_len: must be <= model.max_seq_len (16), got 32" in fails(capsys, "--config", str(config))


def test_resume_applies_changed_optimizer_settings_and_says_so(tmp_path, capsys):
    assert main(["--config", str(write_config(tmp_path, train={"max_steps": 3}))]) == 0
    changed = write_config(tmp_path, train={"max_steps": 6}, optim={"lr": 1e-3, "warmup_steps": 3, "weight_decay": 0.5})
    capsys.readouterr()
    assert main(["--config", str(changed), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "optim.lr: 0.003 -> 0.001; optim.weight_decay: 0.1 -> 0.5; train.max_steps: 3 -> 6" in err
    rows = read_rows(tmp_path / "run" / "metrics.jsonl")
    cosine = warmup_cosine(3, 6, 0.1)
    assert [r["lr"] for r in rows[3:]] == pytest.approx([1e-3 * cosine(s) for s in (3, 4, 5)], rel=1e-12)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "step-00000006" / "optimizer.pt", weights_only=True)
    assert [g["weight_decay"] for g in saved["optimizer"]["param_groups"]] == [0.5, 0.0]
    refused = write_config(tmp_path, train={"max_steps": 9}, optim={"decay_norms": True})
    assert "optim.decay_norms: False -> True" in fails(capsys, "--config", str(refused), "--resume")


def test_a_resume_with_nothing_to_do_keeps_the_summary(tmp_path, capsys):
    config = write_config(tmp_path, train={"max_steps": 3})
    assert main(["--config", str(config)]) == 0
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert main(["--config", str(config), "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert (tmp_path / "run" / "summary.json").read_text() == summary


def test_a_torn_metrics_line_does_not_stop_a_resume(tmp_path):
    assert main(["--config", str(write_config(tmp_path, train={"max_steps": 3}))]) == 0
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "loss": 5.1')  # what a crash mid-write leaves
    assert main(["--config", str(write_config(tmp_path, train={"max_steps": 6})), "--resume"]) == 0
    assert [r["step"] for r in read_rows(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_bad_data_mid_run_keeps_the_steps_before_it(tmp_path, monkeypatch, capsys):
    """A block outside the vocabulary at step 4 (a shard damaged after the run opened it): the run
    stops with the block named, and steps 1-4 are checkpointed."""
    config = write_config(tmp_path, train={"max_steps": 6}, checkpoint={"interval": 100})
    real = StepBatches.micro_batches

    def damaged(self, step):
        if step == 4:
            self.dataset.dataset.tokens = self.dataset.dataset.tokens.copy()
            self.dataset.dataset.tokens[:] = 10_000
        return real(self, step)

    monkeypatch.setattr(StepBatches, "micro_batches", damaged)
    err = fails(capsys, "--config", str(config))
    assert "holds token id 10000, outside the model's vocabulary of 512" in err
    assert "the 4 steps before it are saved in" in err and (tmp_path / "run/checkpoints/step-00000004").is_dir()


def test_a_full_disk_is_one_clear_error(tmp_path, capsys):
    """Checkpoints that do not fit: one line naming the file and the free space, no traceback."""
    with small_disk(tmp_path / "disk", "512k") as disk:
        config = write_config(tmp_path, out_dir=str(disk / "run"), train={"max_steps": 3})
        err = fails(capsys, "--config", str(config))
    assert "cannot write" in err and "MiB free there. Older checkpoints are intact" in err
