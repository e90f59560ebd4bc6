"""gemmaforge: the Gemma family of language models in PyTorch.

Public names load on first use, so `gemmaforge --help` and a Ctrl-C at start-up need no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, ConfigError, GemmaForgeError, InputError, TokenizerError

_LAZY = {
    "GemmaConfig": ".config", "Gemma": ".model",
    "ChatSession": ".inference", "Sampling": ".inference", "generate": ".inference", "stream": ".inference",
    "PromptLookup": ".inference", "SpeculationStats": ".inference",
    "Tokenizer": ".tokenizer", "load_tokenizer": ".tokenizer", "train_tokenizer": ".tokenizer",
    "export_hf": ".weights", "load_model": ".weights", "save_model": ".weights",
    "quantize": ".quant",
}

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
    "PromptLookup",
    "SpeculationStats",
    "ChatSession",
    "load_model",
    "save_model",
    "quantize",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config import GemmaConfig
    from .inference import ChatSession, PromptLookup, Sampling, SpeculationStats, generate, stream
    from .model import Gemma
    from .quant import quantize
    from .tokenizer import Tokenizer, load_tokenizer, train_tokenizer
    from .weights import export_hf, load_model, save_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        try:  # a subpackage, e.g. gemmaforge.inference
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError:
            raise AttributeError(f"module 'gemmaforge' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
