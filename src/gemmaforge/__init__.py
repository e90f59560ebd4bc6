"""gemmaforge: the Gemma family of language models in PyTorch."""

from .config import GemmaConfig
from .errors import CheckpointError, ConfigError, GemmaForgeError, InputError, TokenizerError

__all__ = [
    "GemmaConfig",
    "GemmaForgeError",
    "ConfigError",
    "CheckpointError",
    "TokenizerError",
    "InputError",
]
__version__ = "0.1.0"
