"""AdamW with decoupled weight decay on the matrices only (by default), and its LR scheduler."""

from __future__ import annotations

import torch
from torch import nn

from ..model import RMSNorm
from .config import OptimSection
from .schedule import warmup_cosine


def param_groups(model: nn.Module, cfg: OptimSection) -> list[dict]:
    """Two groups: decayed and not. Norm gains and the (tied) embedding are exempt by default,
    since shrinking them towards zero fights what they encode rather than regularising."""
    skip: set[int] = set()
    for module in model.modules():
        if (isinstance(module, RMSNorm) and not cfg.decay_norms) or \
                (isinstance(module, nn.Embedding) and not cfg.decay_embeddings):
            skip.update(id(p) for p in module.parameters(recurse=False))
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) not in skip], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimSection, max_steps: int
                    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """Build on the parameters as the model holds them for training (DTensors under FSDP2)."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  eps=cfg.eps, fused=True)
    schedule = warmup_cosine(cfg.warmup_steps, max_steps, cfg.min_lr_ratio)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def apply_settings(optimizer: torch.optim.AdamW, scheduler: torch.optim.lr_scheduler.LambdaLR,
                   cfg: OptimSection) -> None:
    """Make the config's hyperparameters, not those a loaded checkpoint carried, drive the run.

    A resumed run may lower the learning rate or change weight decay and betas: AdamW's moments
    and the step count come from the checkpoint, the settings from the config. Unchanged
    settings leave every value bit-identical, so an untouched resume still follows the original.
    """
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    for i, (group, decays) in enumerate(zip(optimizer.param_groups, (True, False))):
        group.update(betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, initial_lr=cfg.lr,
                     weight_decay=cfg.weight_decay if decays else 0.0,
                     lr=cfg.lr * scheduler.lr_lambdas[i](scheduler.last_epoch))


FIXED_ON_RESUME = ("optim.decay_norms", "optim.decay_embeddings")  # they decide the parameter groups


def changed_settings(saved: dict, now: dict) -> dict[str, tuple]:
    """{"optim.<name>": (old, new)} for each optimizer setting of two TrainConfig dicts that
    differs, and train.max_steps (which stretches or shortens the schedule)."""
    pairs = [(f"optim.{k}", saved.get("optim", {}).get(k), v) for k, v in now["optim"].items()]
    pairs.append(("train.max_steps", saved.get("train", {}).get("max_steps"), now["train"]["max_steps"]))
    return {name: (old, new) for name, old, new in pairs if old != new}


def describe(changes: dict[str, tuple]) -> str:
    return "; ".join(f"{name}: {old!r} -> {new!r}" for name, (old, new) in changes.items())
