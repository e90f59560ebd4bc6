"""Training: one loop (`Trainer`) that objectives plug into, and pre-training on top of it.

Pre-training's entry points live in `gemmaforge.train.pretrain` (`pretrain`, `pretrain_main`,
`add_pretrain_arguments`) and SFT's in `gemmaforge.train.sft`; they are not imported here so that
`python -m gemmaforge.train.pretrain` (or `.sft`) runs that module only once. See docs/training.md
and docs/sft.md.
"""

from .config import TrainConfig
from .errors import TrainError
from .loop import StepData, Trainer, TrainResult
from .lora import LoraSettings, apply_lora, merge_lora
from .losses import chunked_cross_entropy
from .modules import ModelWithHead, backbone, freeze, register_wrapper
from .objective import NextTokenObjective, Objective
from .trained import load_trained, to_gemma
from .validation import LossValidation, Validation

__all__ = [
    "TrainConfig", "TrainError", "Trainer", "TrainResult", "StepData", "Objective", "NextTokenObjective",
    "chunked_cross_entropy", "Validation", "LossValidation", "ModelWithHead", "backbone", "freeze",
    "register_wrapper", "LoraSettings", "apply_lora", "merge_lora", "load_trained", "to_gemma",
]
