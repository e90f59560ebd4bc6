"""Training: one loop (`Trainer`) that objectives plug into, and pre-training on top of it.

Pre-training's entry points live in `gemmaforge.train.pretrain` (`pretrain`, `pretrain_main`,
`add_pretrain_arguments`); they are not imported here so that `python -m gemmaforge.train.pretrain`
runs that module only once. See docs/training.md.
"""

from .config import TrainConfig
from .errors import TrainError
from .loop import StepData, Trainer, TrainResult
from .losses import chunked_cross_entropy
from .objective import NextTokenObjective, Objective

__all__ = [
    "TrainConfig", "TrainError", "Trainer", "TrainResult", "StepData", "Objective", "NextTokenObjective",
    "chunked_cross_entropy",
]
