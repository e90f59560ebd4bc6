"""The one training loop every objective shares.

It owns optimisation (AdamW, warm-up + cosine, clipping, accumulation, bf16 autocast where the
hardware has it), distribution (DDP / FSDP2 under torchrun), checkpoint / resume and metrics. It
knows nothing of the data: `StepData` hands it each step's micro-batches, opaque to it, and the
`Objective` turns a micro-batch into a loss.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import GemmaForgeError
from ..model import Gemma
from ..util.paths import writable_dir
from .checkpoint import check_compatible, latest_checkpoint, load_checkpoint, read_meta, remove_partial, save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, all_sum
from .errors import Interrupted, TrainError
from .metrics import MetricsLog, flops_per_token, measure_matmul_flops, progress_bar
from .objective import TOKENS, Objective
from .optim import FIXED_ON_RESUME, apply_settings, build_optimizer, changed_settings, describe
from .parallelize import grad_norm, gradient_sync, parallelize
from .stop import StopRequest


class StepData(Protocol):
    def micro_batches(self, step: int) -> Sequence[Any]:
        """This rank's micro-batches for optimizer step `step` (a pure function of it)."""
        ...

    def position(self, step: int) -> int:
        """Examples consumed over all ranks before `step` (recorded in checkpoints)."""
        ...

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must agree on to resume this stream."""
        ...


@dataclass(frozen=True)
class TrainResult:
    step: int
    train_loss: float | None  # None when the run had no step left to take
    val_loss: float | None
    tokens: int  # trained on by this process's run (resumed runs: since the resume)
    wall_s: float
    resumed_from: int | None
    checkpoint: Path


class Trainer:
    def __init__(self, model: Gemma, objective: Objective, data: StepData, config: TrainConfig,
                 info: DistInfo, val_batches: Sequence[Any] = ()) -> None:
        self.config, self.info, self.objective, self.data = config, info, objective, data
        self.val_batches = val_batches
        self.gemma_config = model.config
        self.n_params = model.num_parameters()
        self.out = Path(config.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        writable_dir(self.out, TrainError, "out_dir")
        t = config.train
        self.model = parallelize(model, info, t.parallel, t.activation_checkpointing, t.compile)
        self.optimizer, self.scheduler = build_optimizer(self.model, config.optim, t.max_steps)
        bf16 = t.precision == "bfloat16" or (t.precision == "auto" and info.device.type == "cuda"
                                              and torch.cuda.is_bf16_supported())
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        self.identity = {**data.identity(), "seq_len": config.data.seq_len}
        peak = config.log.peak_tflops
        self.peak_flops = peak * 1e12 if peak else \
            measure_matmul_flops(info.device, self.autocast_dtype or torch.float32)
        self.flops_per_token = flops_per_token(self.gemma_config, config.data.seq_len, self.n_params)

    # -- one step ----------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.info.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def train_step(self, step: int) -> dict[str, float]:
        """Forward/backward every micro-batch of `step`, then one clipped optimizer step."""
        self.model.train()
        micro = self.data.micro_batches(step)
        weights = self._token_weights(micro)
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            with gradient_sync(self.model, i == len(micro) - 1), self._autocast():
                loss, metrics = self.objective.loss(self.model, to_device(batch, self.info.device))
                (loss / len(micro) if weights is None else loss * weights[i]).backward()
            logged = loss.detach() if weights is None else loss.detach() * (weights[i] * len(micro))
            for k, v in {"loss": logged, **metrics}.items():
                totals[k] = totals.get(k, 0) + torch.as_tensor(v, dtype=torch.float64, device=self.info.device)
        clip = self.config.optim.grad_clip or math.inf
        norm = grad_norm(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip, foreach=True))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        summed = all_sum(torch.stack(list(totals.values())))
        row = {k: float(v) / (1 if k == TOKENS else len(micro) * self.info.world_size)
               for k, v in zip(totals, summed)}
        return {**row, "lr": lr, "grad_norm": norm}

    def _token_weights(self, micro: Sequence[Any]) -> list[float] | None:
        """Each micro-batch's share of the step's scored tokens over all ranks, times the world
        size (DDP and FSDP average gradients over ranks), so that the step optimises the mean over
        tokens, not over micro-batches. None (equal shares) unless the objective counts tokens."""
        count = getattr(self.objective, "tokens", None)
        if count is None:
            return None
        counts = [float(count(b)) for b in micro]
        total = float(all_sum(torch.tensor([sum(counts)], dtype=torch.float64, device=self.info.device))[0])
        if total <= 0:
            raise TrainError("a training step has no scored tokens on any rank (every label is masked?)")
        return [c * self.info.world_size / total for c in counts]

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-weighted mean loss over the validation micro-batches of every rank."""
        self.model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.info.device)
        for batch in self.val_batches:
            with self._autocast():
                loss, metrics = self.objective.loss(self.model, to_device(batch, self.info.device))
            sums[0] += loss.double() * metrics[TOKENS]
            sums[1] += metrics[TOKENS]
        sums = all_sum(sums)
        return float(sums[0] / sums[1])

    # -- the run -----------------------------------------------------------------------------
    def _resume_point(self, resume: bool) -> tuple[Path | None, dict[str, tuple]]:
        """The checkpoint to continue from and the settings that changed since it was written;
        refuses to silently restart over an existing run."""
        found = latest_checkpoint(self.ckpt_dir)
        if found is None:
            if resume:
                self._say(f"--resume: no checkpoint in {self.ckpt_dir}; starting from scratch")
            return None, {}
        if not resume:
            raise TrainError(f"{self.out} already holds checkpoints (newest: {found.name}); pass --resume to "
                             "continue that run, or choose another out_dir")
        meta = read_meta(found)
        check_compatible(found, meta, self.gemma_config, self.identity)
        changes = changed_settings(meta.get("train_config", {}), self.config.to_dict())
        fixed = {name: change for name, change in changes.items() if name in FIXED_ON_RESUME}
        if fixed:
            raise TrainError(f"cannot resume from {found} with {describe(fixed)}: it decides which parameters "
                             "are decayed, which a run cannot change midway")
        return found, changes

    def _save(self, done: int) -> Path:
        meta = {"identity": self.identity, "data_position": self.data.position(done),
                "train_config": self.config.to_dict()}
        return save_checkpoint(self.ckpt_dir, done, self.model, self.gemma_config, self.optimizer,
                               self.scheduler, meta, self.config.checkpoint.keep, self.info,
                               sharded=self.config.checkpoint.format == "sharded")

    def fit(self, resume: bool = False) -> TrainResult:
        cfg, info = self.config, self.info
        found, changes = self._resume_point(resume)
        if info.is_main:
            remove_partial(self.ckpt_dir)
        start = 0
        if found is not None:
            start = load_checkpoint(found, self.model, self.optimizer, self.scheduler, info)["step"]
            apply_settings(self.optimizer, self.scheduler, cfg.optim)
            self._say(f"resumed from {found} at step {start}" + (
                f" with changed settings ({describe(changes)}); learning rate now "
                f"{self.optimizer.param_groups[0]['lr']:.4g}" if changes else ""))
        log = MetricsLog(self.out / "metrics.jsonl", start if found else None) if info.is_main else None
        bar = progress_bar(cfg.train.max_steps, start, info.is_main and cfg.log.progress)
        begin, tokens, row, val = time.perf_counter(), 0, {}, None
        last, saved = found, (start if found else 0)  # the newest checkpoint and its step
        with StopRequest() as stop, contextlib.closing(bar):
            for step in range(start, cfg.train.max_steps):
                if stop.requested(info.device):
                    kept = last if saved == step else self._save(step)
                    raise Interrupted(f"stopped by {stop.name} after step {step}; "
                                      + (f"checkpoint {kept}; continue with --resume" if kept else
                                         "no step had finished, so there is nothing to resume"))
                t0 = time.perf_counter()
                row = self._step_keeping_progress(step, saved)
                seconds = time.perf_counter() - t0
                done = step + 1
                tokens += int(row[TOKENS])
                tps = row[TOKENS] / seconds
                row = {"step": done, **row, "tokens_per_s": tps, "step_s": seconds,
                       "mfu": tps * self.flops_per_token / (self.peak_flops * info.world_size)}
                final = done == cfg.train.max_steps
                evaluated = bool(self.val_batches) and (done % cfg.eval.interval == 0 or final)
                if evaluated:
                    val = row["val_loss"] = self.evaluate()
                if log and (evaluated or done % cfg.log.interval == 0 or final):
                    log.write(row)
                if done % cfg.checkpoint.interval == 0 or final:
                    last, saved = self._save(done), done
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}",
                                **({"val": f"{val:.3f}"} if val is not None else {}))
        if start >= cfg.train.max_steps:
            self._say(f"nothing to do: the run already reached train.max_steps ({cfg.train.max_steps})")
        return TrainResult(step=max(start, cfg.train.max_steps), train_loss=row.get("loss"),
                           val_loss=val, tokens=tokens, wall_s=time.perf_counter() - begin,
                           resumed_from=start if found else None, checkpoint=last)

    def _step_keeping_progress(self, step: int, saved: int) -> dict[str, float]:
        """`train_step`; if bad input (damaged data) stops it, the steps before it are checkpointed
        first (in one process: under torchrun the other ranks could not join the save)."""
        try:
            return self.train_step(step)
        except GemmaForgeError as e:
            if self.info.distributed or saved == step:
                raise
            raise TrainError(f"{e} (the {step} steps before it are saved in {self._save(step)})") from None

    def _say(self, message: str) -> None:
        if self.info.is_main:
            print(f"gemmaforge: {message}", file=sys.stderr)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to `device`, leaving its structure alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
