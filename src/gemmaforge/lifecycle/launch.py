"""How a training stage runs: in the pipeline's own process, or under torchrun with N processes
(`--nproc N`, gloo on CPU) from the same config.

Either way the stage first writes its full TrainConfig to `STAGE_DIR/train.json`; the torchrun path
launches `python -m torch.distributed.run --standalone --local-addr 127.0.0.1 --nproc-per-node N -m
gemmaforge VERB --config STAGE_DIR/train.json` and reads the summary the main rank leaves in
`run/summary.json`. The launcher is not part of a stage's key: the Trainer's DDP/FSDP2 steps average
the same gradient over ranks, so both launches train the same model
(tests/train/test_train_distributed.py) up to float summation order.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.paths import write_atomic
from .errors import PipelineError

CONFIG_FILE = "train.json"
# One machine: the ranks meet on loopback. Without --local-addr, torchrun hands its workers the
# machine's host name as MASTER_ADDR, and where that name does not resolve they wait for ever.
STANDALONE = ("--standalone", "--local-addr", "127.0.0.1")
INTERRUPTED = 130  # a training verb stopped by a signal after a checkpoint


@dataclass(frozen=True)
class Launch:
    nproc: int = 1  # processes per training stage; > 1 runs it under torchrun
    threads: int = 1  # torch threads of the whole stage (split over the processes)


def split_batch(global_batch: int, micro_batch: int, nproc: int, stage: str) -> int:
    """The micro batch for `nproc` ranks: the largest one <= the config's that divides each rank's
    share of the step. It only sets how many sequences a forward pass holds, not the step's
    gradient (the Trainer weights micro-batches by their share of the step's tokens)."""
    if global_batch % nproc:
        raise PipelineError(f"[{stage}.train] global_batch = {global_batch} cannot be shared by --nproc {nproc} "
                            "processes; choose a multiple of it")
    share = global_batch // nproc
    return max(d for d in range(1, min(micro_batch, share) + 1) if share % d == 0)


def train(config: Any, stage: str, verb: list[str], run: Callable[[Any, bool], dict[str, Any]], resume: bool,
          directory: Path, launch: Launch) -> dict[str, Any]:
    """Run `config` (a TrainConfig) with `run` here, or with `gemmaforge VERB` under torchrun."""
    if launch.nproc > 1:
        micro = split_batch(config.train.global_batch, config.train.micro_batch, launch.nproc, stage)
        config = config.replace(train={"micro_batch": micro})
    written = directory / CONFIG_FILE
    write_atomic(written, (json.dumps(config.to_dict(), indent=2) + "\n").encode())
    if launch.nproc == 1:
        return run(config, resume)
    threads = max(1, math.floor(launch.threads / launch.nproc))
    command = [sys.executable, "-m", "torch.distributed.run", *STANDALONE, f"--nproc-per-node={launch.nproc}",
               "-m", "gemmaforge", *verb, "--config", str(written), "--threads", str(threads),
               *(["--resume"] if resume else [])]
    code = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
    if code == INTERRUPTED:
        raise KeyboardInterrupt  # the stage stopped at a checkpoint; the next run resumes it
    if code != 0:
        raise PipelineError(f"stage {stage}: `{' '.join(command[2:])}` exited with status {code} (its messages "
                            "are above); fix the cause and re-run: the stage resumes from its last checkpoint")
    return json.loads((Path(config.out_dir) / "summary.json").read_text())
