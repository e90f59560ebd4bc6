"""gemmaforge: the Gemma family of language models in PyTorch."""

from .config import GemmaConfig
from .errors import CheckpointError, ConfigError, GemmaForgeError, InputError, TokenizerError
from .generate import generate, stream
from .model import Gemma
from .quantize import quantize  # the function; the package stays importable as gemmaforge.quantize.*
from .sampling import Sampling
from .session import ChatSession
from .tokenizer import Tokenizer, load_tokenizer
from .tokenizer_train import train_tokenizer
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
    "quantize",
]
__version__ = "0.1.0"
