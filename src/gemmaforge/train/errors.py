"""The one error type training raises for bad input (config, data, checkpoints)."""

from ..errors import GemmaForgeError


class TrainError(GemmaForgeError, ValueError):
    """A training run that cannot start or resume as configured; the message names the culprit."""


class Interrupted(TrainError):
    """The run stopped on a signal after writing a checkpoint; `--resume` continues it."""
