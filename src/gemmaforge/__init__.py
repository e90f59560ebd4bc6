"""gemmaforge: the Gemma family of language models in PyTorch."""

from .config import GemmaConfig
from .errors import CheckpointError, ConfigError, GemmaForgeError, InputError, TokenizerError
from .model import Gemma
from .weights import export_hf, load_model, save_model

__all__ = [
    "GemmaConfig",
    "Gemma",
    "load_model",
    "save_model",
    "export_hf",
    "GemmaForgeError",
    "ConfigError",
    "CheckpointError",
    "TokenizerError",
    "InputError",
]
__version__ = "0.1.0"
