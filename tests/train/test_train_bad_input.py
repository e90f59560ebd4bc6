"""Bad input stops the run with one clear line, before any work is lost."""

from __future__ import annotations

import pytest
from train_helpers import write_config

from gemmaforge.train.pretrain import main


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
