"""Generation: prefill once, then decode token by token through a preallocated KV cache.

`Decoder` works on token ids and yields one token per row per step; `generate` and `stream` put
a tokenizer around it. Prompts of different lengths are left-padded into one batch; positions
count real tokens only, so each row decodes as it would alone (token for token in float32; in
bfloat16 padding changes the rounding of batched matmuls, so long greedy texts can drift).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch

from ..errors import InputError
from ..kv_cache import KVCache, PromptCache
from ..model import Gemma
from .compiled import compiled_decode, static_length
from .sampling import Sampling, choose
from .speculative import NgramIndex, PromptLookup, SpeculationStats, resolve_speculative

PREFILL_CHUNK = 1024  # prompt tokens per forward pass


class TextTokenizer(Protocol):
    eos_id: int
    end_of_turn_id: int

    def encode(self, text: str, add_bos: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


def fit_context(prompt: list[int], max_new_tokens: int, context: int, truncate: bool, index: int = 0) -> list[int]:
    """The prompt, or its first token (BOS) plus its most recent tokens when truncating."""
    if not prompt:
        raise InputError(f"prompt {index} is empty (it needs at least the BOS token)")
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    room = context - max_new_tokens
    if len(prompt) <= room:
        return prompt
    if truncate and room < 2:
        raise InputError(f"max_new_tokens={max_new_tokens} leaves no room for prompt {index} in the model's "
                         f"context of {context}; lower max_new_tokens")
    if not truncate:
        raise InputError(
            f"prompt {index} is {len(prompt)} tokens; with max_new_tokens={max_new_tokens} it needs "
            f"{len(prompt) + max_new_tokens} positions but the model's context is {context}. Shorten the "
            "prompt, lower max_new_tokens, or ask for truncation (truncate=True / --truncate)")
    return prompt[:1] + prompt[len(prompt) - room + 1:]


class Decoder:
    """Token-level generation for a batch of prompts; iterate to get each step's new tokens.

    Each step yields a list with the new token id of every row, or None for rows that have
    finished (a stop id, `max_new_tokens`, or `finish(row)` called by the consumer).
    Row i samples from its own random stream, seeded from (sampling.seed, sample_ids[i]);
    `sample_ids` defaults to 0, 1, 2, ... so copies of one prompt give different samples.
    With a `prompt_cache` (one prompt only), the prompt's prefix already in that cache is not
    computed again, and the cache keeps this generation for the next one. With `logprobs`, each
    row's `logprobs[row]` collects the log-probability of every token it yields under the
    distribution it was sampled from before top-k/top-p (softmax of logits / temperature; of the
    logits when greedy): what RL needs of its rollouts, computed once. With `speculative`
    ("prompt-lookup" or a `PromptLookup`; one prompt only), each forward pass checks tokens drafted
    from earlier in the text and may yield several steps; the steps are those of plain decoding, and
    `stats` counts what was drafted and accepted. With `compile`, each decode step runs as one
    `torch.compile`d program over a static cache (inference.compiled): the same tokens, less Python
    per token, after a one-off compilation.
    """

    def __init__(self, model: Gemma, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 sampling: Sampling | None = None, stop_ids: Sequence[int] = (), truncate: bool = False,
                 prompt_cache: PromptCache | None = None, sample_ids: Sequence[int] | None = None,
                 logprobs: bool = False, speculative: str | PromptLookup | None = None, compile: bool = False):
        ctx = model.config.max_seq_len
        self.prompts = [fit_context(list(p), max_new_tokens, ctx, truncate, i) for i, p in enumerate(prompts)]
        if prompt_cache is not None and len(self.prompts) != 1:
            raise InputError(f"a prompt cache serves one prompt at a time, got {len(self.prompts)}")
        self.speculative = resolve_speculative(speculative)
        if self.speculative is not None and len(self.prompts) > 1:
            raise InputError(f"speculative decoding serves one prompt at a time, got {len(self.prompts)}; "
                             "generate them one by one, or without speculative=")
        if compile and (self.speculative is not None or prompt_cache is not None):
            raise InputError("compile=True decodes one token per step over its own static cache; it cannot be "
                             "combined with speculative= or a prompt cache")
        self.compile = compile
        self.stats = SpeculationStats()
        self.prompt_cache = prompt_cache
        sampling = sampling or Sampling()
        self.model, self.sampling, self.max_new_tokens = model, sampling, max_new_tokens
        self.stop_ids = frozenset(stop_ids)
        self.done = [max_new_tokens == 0] * len(self.prompts)
        self.sample_ids = list(range(len(self.prompts)) if sample_ids is None else sample_ids)
        if len(self.sample_ids) != len(self.prompts):
            raise InputError(f"{len(self.sample_ids)} sample ids for {len(self.prompts)} prompts")
        self.logprobs: list[list[float]] | None = [[] for _ in self.prompts] if logprobs else None

    def finish(self, row: int) -> None:
        self.done[row] = True

    def _prefill(self, device: torch.device) -> tuple[KVCache, torch.Tensor]:
        """The KV cache after the prompts, and the logits at each prompt's last position."""
        model, prompts = self.model, self.prompts
        need = max(len(p) for p in prompts) + self.max_new_tokens
        if self.prompt_cache is not None:
            cache, held = self.prompt_cache.take(model.config, model.dtype, device, prompts[0], need)
            return cache, prefill(model, torch.tensor([prompts[0][held:]], device=device), None, cache)
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding: every row's last token is at the end
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        spare = self.speculative.num_tokens if self.speculative else 0  # ring slots for rolled-back drafts
        if self.compile:
            need = static_length(need, model.config.max_seq_len)
        cache = model.new_cache(len(prompts), need, spare=spare, static=self.compile)
        return cache, prefill(model, ids.to(device), mask.to(device), cache)

    def _pick(self, last: torch.Tensor, seen: torch.Tensor | None,
              generators: list[torch.Generator]) -> tuple[torch.Tensor, list[int | None]]:
        """Each row's next token from its logits `last` [B, V] (float32), and the step to yield."""
        nxt = choose(last, self.sampling, seen, generators).cpu()
        if self.logprobs is not None:
            scale = self.sampling.temperature or 1.0
            picked = torch.log_softmax(last / scale, -1).gather(-1, nxt[:, None].to(last.device))[:, 0].tolist()
        if seen is not None:
            seen[torch.arange(len(nxt)), nxt.to(seen.device)] = True
        out: list[int | None] = []
        for row, tok in enumerate(nxt.tolist()):
            if self.done[row]:
                out.append(None)
                continue
            out.append(tok)
            if self.logprobs is not None:
                self.logprobs[row].append(picked[row])
            if tok in self.stop_ids:
                self.done[row] = True
        return nxt, out

    @torch.inference_mode()
    def __iter__(self) -> Iterator[list[int | None]]:
        if not self.prompts or all(self.done):
            return
        model, device = self.model, self.model.embed.weight.device
        batch = len(self.prompts)
        seen = None
        if self.sampling.repetition_penalty != 1.0:
            seen = torch.zeros(batch, model.config.vocab_size, dtype=torch.bool, device=device)
            for i, p in enumerate(self.prompts):
                seen[i, torch.tensor(p, device=device)] = True
        cache, logits = self._prefill(device)
        generators = [] if self.sampling.greedy else self.sampling.generators(self.sample_ids, logits.device)
        fed = list(self.prompts[0]) if batch == 1 else []  # what the cache holds (one prompt: no padding)
        try:
            if self.speculative is not None:
                yield from self._speculate(self.speculative, cache, logits, seen, generators, fed)
                return
            for step in range(self.max_new_tokens):
                nxt, out = self._pick(logits[:, -1].float(), seen, generators)
                yield out
                if all(self.done) or step == self.max_new_tokens - 1:  # no forward for a token never used
                    break
                ids = nxt[:, None].to(device)
                logits = compiled_decode(model, ids, cache) if self.compile else model(ids, cache=cache)
                fed.append(int(nxt[0]))
        finally:  # also when the consumer stops early: the cache holds exactly `fed`
            self.done = [True] * batch
            if self.prompt_cache is not None:
                self.prompt_cache.tokens = fed

    def _speculate(self, settings: PromptLookup, cache: KVCache, logits: torch.Tensor, seen: torch.Tensor | None,
                   generators: list[torch.Generator], fed: list[int]) -> Iterator[list[int | None]]:
        """Batch-1 decoding that feeds [last token, drafts] per forward. logits[:, i] is what plain
        decoding would see after fed token i, so each step is picked exactly as it would be there;
        the drafts after the first one the model did not pick are forgotten by the cache."""
        index = NgramIndex(settings, self.prompts[0])
        device, drafts = logits.device, []
        while True:
            for i in range(len(drafts) + 1):
                _, out = self._pick(logits[:, i].float(), seen, generators)
                yield out
                index.append(out[0])
                hit = i < len(drafts) and out[0] == drafts[i]
                self.stats.tokens += 1
                self.stats.accepted += hit
                if self.done[0] or self.stats.tokens == self.max_new_tokens:
                    return
                if not hit:
                    break
            del fed[len(fed) - len(drafts) + i:]  # the rejected drafts
            cache.truncate(len(fed))
            drafts = index.draft(self.max_new_tokens - self.stats.tokens - 1, self.stop_ids)  # room in the cache
            self.stats.drafted += len(drafts)
            self.stats.forwards += 1
            logits = self.model(torch.tensor([[out[0]] + drafts], device=device), cache=cache)
            fed += [out[0]] + drafts


def prefill(model: Gemma, ids: torch.Tensor, mask: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
    """Run `ids` [B, T] into `cache` PREFILL_CHUNK tokens at a time; the logits at the last position.

    Chunks bound the attention mask to chunk x context instead of context squared: a 32k-token
    prompt would otherwise need about 5 GB of mask alone.
    """
    logits = None
    for s in range(0, ids.shape[1], PREFILL_CHUNK):
        part = None if mask is None else mask[:, s:s + PREFILL_CHUNK]
        logits = model(ids[:, s:s + PREFILL_CHUNK], attention_mask=part, cache=cache, logits_at="last")
    return logits


class TextStream:
    """Turns a growing list of token ids into text deltas that never split a UTF-8 character.

    Text that could be the start of a stop string is held back until it is known not to be one.
    """

    def __init__(self, tokenizer: TextTokenizer, stop: Sequence[str] = ()):
        self.tok, self.stop = tokenizer, [s for s in stop if s]
        self.ids: list[int] = []
        self.text = ""  # the whole text so far, cut at a stop string
        self.emitted = 0  # characters of `text` already handed out
        self.stopped = False

    def _held_back(self) -> int:
        return max((k for s in self.stop for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)

    def push(self, token: int) -> str:
        self.ids.append(token)
        full = self.tok.decode(self.ids)
        for s in self.stop:
            at = full.find(s, max(0, len(self.text) - len(s)))
            if at >= 0:
                full, self.stopped = full[:at], True
        if full.endswith("\ufffd") and not self.stopped:
            return ""  # a multi-byte character is still incomplete
        self.text = full
        end = len(full) if self.stopped else len(full) - self._held_back()
        delta, self.emitted = full[self.emitted:end], max(self.emitted, end)
        return delta

    def flush(self) -> str:
        """Whatever is left once generation ends without a stop string."""
        if not self.stopped:
            self.text = self.tok.decode(self.ids)
        delta, self.emitted = self.text[self.emitted:], len(self.text)
        return delta


def _setup(model: Gemma, tokenizer: TextTokenizer, prompts: Sequence[str | Sequence[int]], max_new_tokens: int,
           sampling: Sampling, add_bos: bool, truncate: bool, prompt_cache: PromptCache | None = None,
           sample_ids: Sequence[int] | None = None, speculative: str | PromptLookup | None = None,
           compile: bool = False) -> Decoder:
    ids = [tokenizer.encode(p, add_bos=add_bos) if isinstance(p, str) else list(p) for p in prompts]
    stop_ids = {tokenizer.eos_id, getattr(tokenizer, "end_of_turn_id", tokenizer.eos_id)}
    return Decoder(model, ids, max_new_tokens, sampling, stop_ids, truncate, prompt_cache, sample_ids,
                   speculative=speculative, compile=compile)


def resolve_sampling(sampling: Sampling | None, temperature: float, top_k: int | None, top_p: float | None,
                     repetition_penalty: float, seed: int) -> Sampling:
    """`sampling` if given, else one built from the separate keywords (not both: one would be ignored)."""
    loose = Sampling(temperature, top_k, top_p, repetition_penalty, seed)
    if sampling is None:
        return loose
    if loose != Sampling():
        raise InputError("pass either sampling=Sampling(...) or temperature/top_k/top_p/repetition_penalty/seed, "
                         "not both")
    return sampling


def stream(model: Gemma, tokenizer: TextTokenizer, prompt: str | Sequence[int], max_new_tokens: int = 64,
           temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
           repetition_penalty: float = 1.0, seed: int = 0, stop: Sequence[str] = (), add_bos: bool = True,
           truncate: bool = False, prompt_cache: PromptCache | None = None, *, sampling: Sampling | None = None,
           sample_id: int = 0, speculative: str | PromptLookup | None = None,
           stats: SpeculationStats | None = None, compile: bool = False) -> Iterator[str]:
    """Yield the continuation of one prompt as text deltas, as soon as each is complete.
    A `prompt_cache` carried from call to call skips recomputing the prefix the prompts share.
    `sample_id` picks the random stream: (seed, k) gives what row k of a batch would.
    `speculative="prompt-lookup"` (or a `PromptLookup`) drafts tokens from the text so far and
    checks them in one forward pass: the same text, in fewer passes; `stats` adds up its counts.
    `compile=True` runs each decode step as one compiled program (Decoder): faster per token once
    compiled, for long or repeated generations."""
    sampling = resolve_sampling(sampling, temperature, top_k, top_p, repetition_penalty, seed)
    dec = _setup(model, tokenizer, [prompt], max_new_tokens, sampling, add_bos, truncate, prompt_cache,
                 [sample_id], speculative, compile)
    try:
        text = TextStream(tokenizer, stop)
        for (tok,) in dec:
            if tok is None or tok in dec.stop_ids:
                break
            delta = text.push(tok)
            if delta:
                yield delta
            if text.stopped:
                dec.finish(0)
                return
        rest = text.flush()
        if rest:
            yield rest
    finally:
        if stats is not None:
            stats.add(dec.stats)


def generate(model: Gemma, tokenizer: TextTokenizer, prompts: Sequence[str | Sequence[int]],
             max_new_tokens: int = 64, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, repetition_penalty: float = 1.0, seed: int = 0,
             stop: Sequence[str] = (), add_bos: bool = True, truncate: bool = False, *,
             sampling: Sampling | None = None, sample_ids: Sequence[int] | None = None,
             speculative: str | PromptLookup | None = None, stats: SpeculationStats | None = None,
             compile: bool = False) -> list[str]:
    """Continuations of a batch of prompts (strings, or token id lists used as given).
    Row i samples from the stream of (seed, sample_ids[i]), by default (seed, i).
    `speculative`, `stats` and `compile` as in `stream` (speculative: one prompt at a time)."""
    if isinstance(prompts, str):
        raise InputError("generate takes a list of prompts; wrap a single prompt in a list")
    sampling = resolve_sampling(sampling, temperature, top_k, top_p, repetition_penalty, seed)
    dec = _setup(model, tokenizer, prompts, max_new_tokens, sampling, add_bos, truncate, None, sample_ids,
                 speculative, compile)
    streams = [TextStream(tokenizer, stop) for _ in prompts]
    for step in dec:
        for row, tok in enumerate(step):
            if tok is None or tok in dec.stop_ids:
                continue
            streams[row].push(tok)
            if streams[row].stopped:
                dec.finish(row)
    for s in streams:
        s.flush()
    if stats is not None:
        stats.add(dec.stats)
    return [s.text for s in streams]
