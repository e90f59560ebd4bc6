"""Inference over the KV cache: the prefill/decode engine, token sampling and the chat session."""

from .chat_session import ChatSession
from .generate import Decoder, generate, stream
from .sampling import Sampling
from .speculative import PromptLookup, SpeculationStats

__all__ = ["ChatSession", "Decoder", "PromptLookup", "Sampling", "SpeculationStats", "generate", "stream"]
