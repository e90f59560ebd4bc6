"""Errors gemmaforge raises for bad input: each says what is wrong and where."""


class GemmaForgeError(Exception):
    """Base class: a user-facing error whose message is the whole story (no traceback needed)."""


class ConfigError(GemmaForgeError, ValueError):
    """An invalid or unknown model configuration."""


class CheckpointError(GemmaForgeError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class TokenizerError(GemmaForgeError):
    """A tokenizer file that is missing, corrupt or does not fit."""


class InputError(GemmaForgeError, ValueError):
    """A request the model cannot serve as given (e.g. a prompt longer than the context)."""
