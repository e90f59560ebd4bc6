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
