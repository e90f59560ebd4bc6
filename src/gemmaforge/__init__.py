"""gemmaforge: the Gemma family of language models in PyTorch."""

from .config import GemmaConfig
from .errors import CheckpointError, ConfigError, GemmaForgeError, InputError, TokenizerError
from .inference import ChatSession, Sampling, generate, stream
from .model import Gemma
from .tokenizer import Tokenizer, load_tokenizer, train_tokenizer
from .weights import export_hf, load_model, save_model

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Gemma",
    "GemmaConfig",
    "GemmaForgeError",
    "InputError",
    "TokenizerError",
    "export_hf",
    "Tokenizer",
    "load_tokenizer",
    "train_tokenizer",
    "generate",
    "stream",
    "Sampling",
    "ChatSession",
    "load_model",
    "save_model",
]
__version__ = "0.1.0"
