"""Turning a plain Gemma into the module that trains, from outside the model (torchtitan's way):
activation checkpointing and torch.compile per Block, then DDP or FSDP2 across ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointImpl, checkpoint_wrapper
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.nn.parallel import DistributedDataParallel

from .distributed import DistInfo


def parallelize(model: nn.Module, info: DistInfo, mode: str, activation_checkpointing: bool,
                compile: bool) -> nn.Module:
    """Wrap in the order torchtitan uses: checkpointing inside compile inside FSDP.

    `model` is a Gemma or a module around one (`modules.backbone`). FSDP2 shards each of the
    Gemma's Blocks separately, then the root (embedding, final norm and any wrapper's own
    modules), so only one Block's full parameters exist at a time. State-dict keys stay those of
    the plain module.
    """
    from .modules import backbone

    model.to(info.device)
    layers = backbone(model).layers
    for i, block in enumerate(layers):
        if activation_checkpointing:
            block = checkpoint_wrapper(block, checkpoint_impl=CheckpointImpl.NO_REENTRANT)
        if compile:
            block.compile()
        layers[i] = block
    if not info.distributed:
        return model
    if mode == "fsdp":
        for block in layers:
            fully_shard(block)
        fully_shard(model)
        return model
    return DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside whatever `parallelize` returned (FSDP2 keeps the module itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch of a step."""
    if isinstance(model, DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
    yield


def grad_norm(norm: torch.Tensor) -> float:
    """clip_grad_norm_'s result as a float (a DTensor under FSDP2)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
