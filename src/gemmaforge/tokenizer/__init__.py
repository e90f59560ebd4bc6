"""Text <-> ids: the SentencePiece wrapper with Gemma's special tokens, the rebuild of a tokenizer
from a GGUF vocabulary, tokenizer training, and the chat template with its turn masks."""

from .tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer
from .train import train_tokenizer

__all__ = ["TOKENIZER_FILE", "Tokenizer", "load_tokenizer", "train_tokenizer"]
