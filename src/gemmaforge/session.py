"""A multi-turn chat with a model: history in the model's own chat format, replies streamed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .generate import stream
from .kv_cache import PromptCache
from .model import Gemma
from .sampling import Sampling
from .tokenizer import Tokenizer


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

    def reset(self) -> None:
        self.messages.clear()
        self.cache.reset()

    def _prompt(self, text: str) -> list[int]:
        """The chat so far plus `text` as the model's prompt. The oldest exchanges are dropped
        (for good, counted in `dropped`) until the prompt and a full reply fit the context."""
        self.dropped = 0
        while True:
            messages = self.messages + [{"role": "user", "content": text}]
            if self.system:
                messages = [{"role": "system", "content": self.system}] + messages
            prompt = self.tokenizer.encode(self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, system="fold" if self.system else None))
            if len(prompt) + self.max_new_tokens <= self.model.config.max_seq_len or not self.messages:
                return prompt  # if `text` alone is too long, generation says so
            del self.messages[:2]
            self.dropped += 1

    def send(self, text: str) -> Iterator[str]:
        """Stream the model's reply to `text`; the exchange joins the history once complete."""
        prompt = self._prompt(text)
        s = self.sampling
        reply = []
        for delta in stream(self.model, self.tokenizer, prompt, self.max_new_tokens, s.temperature, s.top_k,
                            s.top_p, s.repetition_penalty, s.seed, prompt_cache=self.cache):
            reply.append(delta)
            yield delta
        self.messages += [{"role": "user", "content": text}, {"role": "model", "content": "".join(reply).strip()}]
