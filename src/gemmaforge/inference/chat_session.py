"""A multi-turn chat with a model: history in the model's own chat format, replies streamed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import InputError
from ..kv_cache import PromptCache
from ..model import Gemma
from ..tokenizer.tokenizer import Tokenizer
from .generate import stream
from .sampling import Sampling
from .speculative import PromptLookup, SpeculationStats


@dataclass
class ChatSession:
    model: Gemma
    tokenizer: Tokenizer
    sampling: Sampling = field(default_factory=Sampling)
    max_new_tokens: int = 256
    system: str | None = None  # folded into the first user turn (Gemma has no system role of its own)
    messages: list[dict[str, str]] = field(default_factory=list)
    cache: PromptCache = field(default_factory=PromptCache)  # each turn prefills only itself
    dropped: int = 0  # oldest exchanges dropped by the last `send` to fit the context
    speculative: str | PromptLookup | None = None  # e.g. "prompt-lookup": same replies, fewer forward passes
    stats: SpeculationStats = field(default_factory=SpeculationStats)  # what speculation did, over all turns

    def reset(self) -> None:
        self.messages.clear()
        self.cache.reset()

    def _prompt(self, text: str) -> list[int]:
        """The chat so far plus `text` as the model's prompt. The oldest exchanges are dropped
        (for good, counted in `dropped`) until the prompt and a full reply fit the context; a
        message that cannot fit even alone is refused before any history is touched."""
        self.dropped = 0
        context = self.model.config.max_seq_len
        alone = len(self._render([], text))
        if alone + self.max_new_tokens > context:
            raise InputError(f"this message is {alone} tokens in the chat format; with a reply of up to "
                             f"{self.max_new_tokens} tokens it needs {alone + self.max_new_tokens} positions "
                             f"but the model's context is {context}. Shorten it or lower max_new_tokens; "
                             "the conversation so far is kept")
        while True:
            prompt = self._render(self.messages, text)
            if len(prompt) + self.max_new_tokens <= context:
                return prompt
            del self.messages[:2]
            self.dropped += 1

    def _render(self, history: list[dict[str, str]], text: str) -> list[int]:
        messages = history + [{"role": "user", "content": text}]
        if self.system:
            messages = [{"role": "system", "content": self.system}] + messages
        return self.tokenizer.encode(self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, system="fold" if self.system else None))

    def send(self, text: str) -> Iterator[str]:
        """Stream the model's reply to `text`; the exchange joins the history once complete."""
        prompt = self._prompt(text)
        reply = []
        for delta in stream(self.model, self.tokenizer, prompt, self.max_new_tokens, prompt_cache=self.cache,
                            sampling=self.sampling, speculative=self.speculative, stats=self.stats):
            reply.append(delta)
            yield delta
        self.messages += [{"role": "user", "content": text}, {"role": "model", "content": "".join(reply).strip()}]
