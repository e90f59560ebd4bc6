"""The continuous-batching engine: one thread owns the model and a slot-based KV cache.

Every sequence (one choice of one request) gets a row of a KV cache preallocated for `max_batch`
rows when it is admitted and gives it back the step it finishes or its client leaves. Each loop
iteration runs at most `prefill_chunk` prompt tokens of new sequences (oldest first; a long prompt
takes several iterations) and one decode step for every sequence already decoding, so a long
prompt delays running streams by one chunk per token instead of freezing them. Positions are per
row, so a sequence decodes exactly as it would alone; each has its own sampling settings and its
own random generator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import InputError
from ..inference.generate import TextStream
from ..inference.sampling import Sampling, choose
from ..kv_cache import KVCache
from ..model import Gemma
from .metrics import Metrics

log = logging.getLogger("gemmaforge.serve")


class QueueFull(Exception):
    """The waiting queue has no room: the caller answers 429."""


@dataclass(frozen=True)
class Params:
    """What one sequence asks for. `logprobs`: None for none, else how many alternatives per token."""

    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    ignore_eos: bool = False


@dataclass
class TokenEvent:
    index: int
    text: str  # the new text (may be empty: held back for a stop string or an incomplete character)
    token: int | None  # None for text flushed at the end
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # (token, logprob) alternatives


@dataclass
class FinishEvent:
    index: int
    reason: str  # "stop" or "length" (OpenAI's finish_reason), or "error"
    completion_tokens: int
    message: str = ""


Event = TokenEvent | FinishEvent


@dataclass(eq=False)
class Sequence:
    """One generation in flight. `sink` receives its events (called from the engine thread).
    `index` is its choice number in the request, and its sample id: it samples from the random
    stream of (seed, index), as row `index` of `gf.generate` does."""

    prompt: list[int]
    params: Params
    sink: Callable[[Event], None]
    index: int = 0
    stream: TextStream | None = None
    generator: torch.Generator | None = None
    row: int | None = None
    fed: int = 0  # prompt tokens already in the cache
    pending: int | None = None  # the last sampled token, fed at the next decode step
    generated: int = 0
    cancelled: bool = False
    finished: bool = False
    arrived: float = field(default_factory=time.perf_counter)
    last_token_at: float | None = None

    @property
    def position(self) -> int:
        """How many positions of its row the cache holds."""
        return self.fed + max(self.generated - 1, 0)


class Engine:
    def __init__(self, model: Gemma, tokenizer, max_batch: int = 16, context: int | None = None,
                 max_queue: int = 64, prefill_chunk: int = 256, metrics: Metrics | None = None):
        cfg = model.config
        self.context = min(context or cfg.max_seq_len, cfg.max_seq_len)
        if max_batch < 1 or max_queue < 0 or prefill_chunk < 1 or self.context < 2:
            raise InputError("max_batch and prefill_chunk must be >= 1, max_queue >= 0, context >= 2")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue, self.prefill_chunk = max_batch, max_queue, prefill_chunk
        self.metrics = metrics or Metrics()
        self.device = model.embed.weight.device
        self.cache = KVCache.allocate(cfg, max_batch, self.context, model.dtype, self.device)
        self.rows: list[Sequence | None] = [None] * max_batch
        self.waiting: deque[Sequence] = deque()
        self.stop_ids = frozenset({tokenizer.eos_id, getattr(tokenizer, "end_of_turn_id", tokenizer.eos_id)})
        self.steps = 0  # loop iterations that ran the model
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- called from other threads ---------------------------------------------------------
    def submit(self, seqs: list[Sequence]) -> None:
        """Queue all of `seqs` (one request's choices) or none of them."""
        with self._lock:
            if len(self.waiting) + len(seqs) > self.max_queue:
                raise QueueFull(f"the queue holds {len(self.waiting)} of {self.max_queue} sequences")
            self.waiting.extend(seqs)
            self.metrics.queue_depth.set(len(self.waiting))
        self._wake.set()

    def cancel(self, seqs: list[Sequence]) -> None:
        """Stop `seqs` (their client left or timed out); their rows are freed at the next step."""
        with self._lock:
            for s in seqs:
                s.cancelled = True
                if s in self.waiting:
                    self.waiting.remove(s)
            self.metrics.queue_depth.set(len(self.waiting))
        self._wake.set()

    @property
    def active(self) -> int:
        return sum(s is not None for s in self.rows)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gemmaforge-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    # -- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stopping:
            try:
                with torch.inference_mode():
                    worked = self.step()
            except Exception:  # the engine must outlive any one batch: fail it, keep serving
                log.exception("engine step failed; failing the sequences in the batch")
                for s in self.rows:
                    if s is not None:
                        self._finish(s, "error", "the engine failed on this request (see the server log)")
                worked = True
            if not worked:
                self._wake.wait(0.05)
                self._wake.clear()

    def step(self) -> bool:
        """One iteration: free rows, admit, up to `prefill_chunk` prompt tokens, one decode step.
        False when there was nothing to run."""
        for s in self.rows:
            if s is not None and s.cancelled:
                self._free(s)
        self._admit()
        prefilling = [s for s in self.rows if s is not None and s.fed < len(s.prompt)]
        decoding = [s for s in self.rows if s is not None and s.pending is not None]
        budget = self.prefill_chunk  # prompt tokens this step, oldest sequences first
        for s in sorted(prefilling, key=lambda s: s.arrived):
            if budget <= 0:
                break
            budget -= self._prefill_chunk(s, budget)
        if decoding:
            self._decode(decoding)
        self.metrics.batch_occupancy.set(self.active)
        worked = bool(prefilling or decoding)
        self.steps += worked
        return worked

    def _admit(self) -> None:
        with self._lock:
            for row in range(self.max_batch):  # lowest rows first, so decode views stay short
                if not self.waiting:
                    break
                if self.rows[row] is None:
                    s = self.waiting.popleft()
                    s.row = row
                    self.rows[row] = s
                    for p in self.cache.slot_pos:  # forget the previous occupant's keys
                        p[row] = -1
                    s.stream = TextStream(self.tokenizer, s.params.stop)
                    s.generator = s.params.sampling.generators([s.index], self.device)[0]
                    self.metrics.prompt_tokens.inc(len(s.prompt))
            self.metrics.queue_depth.set(len(self.waiting))

    def _view(self, lo: int, hi: int, length: int) -> KVCache:
        """Rows lo..hi-1 of the cache (views: writes land in the shared tensors), holding `length`."""
        c = self.cache
        return KVCache([k[lo:hi] for k in c.keys], [v[lo:hi] for v in c.values], [p[lo:hi] for p in c.slot_pos],
                       c.ring, torch.zeros(hi - lo, dtype=torch.long, device=self.device), c.max_len, length, length)

    def _prefill_chunk(self, s: Sequence, budget: int) -> int:
        """Run up to `budget` more prompt tokens of `s` into its row; how many it ran."""
        ids = s.prompt[s.fed:s.fed + budget]
        pos = torch.arange(s.fed, s.fed + len(ids), device=self.device)[None]
        logits = self.model(torch.tensor([ids], device=self.device), positions=pos,
                            cache=self._view(s.row, s.row + 1, s.fed), logits_at="last")
        s.fed += len(ids)
        if s.fed == len(s.prompt):
            self._emit_or_fail(s, logits[0, -1])
        return len(ids)

    def _decode(self, seqs: list[Sequence]) -> None:
        hi = max(s.row for s in seqs) + 1
        ids = torch.zeros(hi, 1, dtype=torch.long)
        pos = torch.zeros(hi, 1, dtype=torch.long)
        mask = torch.zeros(hi, 1, dtype=torch.long)  # rows not decoding now are padding
        for s in seqs:
            ids[s.row, 0], pos[s.row, 0], mask[s.row, 0] = s.pending, s.position, 1
        length = max(s.position for s in seqs)
        logits = self.model(ids.to(self.device), attention_mask=mask.to(self.device), positions=pos.to(self.device),
                            cache=self._view(0, hi, length))
        for s in seqs:
            self._emit_or_fail(s, logits[s.row, -1])

    def _emit_or_fail(self, s: Sequence, logits: torch.Tensor) -> None:
        """A sequence whose sampling fails ends alone; the others in the batch go on."""
        try:
            self._emit(s, logits)
        except Exception:
            log.exception("sampling failed for one sequence")
            self._finish(s, "error", "sampling failed on this request (see the server log)")

    def _emit(self, s: Sequence, logits: torch.Tensor) -> None:
        """Sample the next token of `s` from its logits [V]; send it on; finish `s` if it is done."""
        row = logits.float()[None]
        tok = int(choose(row, s.params.sampling, None, [s.generator])[0])
        now = time.perf_counter()
        if s.last_token_at is None:
            self.metrics.ttft.observe(now - s.arrived)
        else:
            self.metrics.itl.observe(now - s.last_token_at)
        s.last_token_at = now
        s.generated += 1
        self.metrics.completion_tokens.inc()
        logprob = top = None
        if s.params.logprobs is not None:
            lp = torch.log_softmax(row[0], -1)
            logprob = float(lp[tok])
            if s.params.logprobs:
                vals, idx = lp.topk(s.params.logprobs)
                top = list(zip(idx.tolist(), vals.tolist()))
        if tok in self.stop_ids and not s.params.ignore_eos:  # counted, but not part of the text
            self._finish(s, "stop")
            return
        s.sink(TokenEvent(s.index, s.stream.push(tok), tok, logprob, top))
        if s.stream.stopped:
            self._finish(s, "stop")
        elif s.generated >= s.params.max_tokens:
            self._finish(s, "length")
        else:
            s.pending = tok

    def _finish(self, s: Sequence, reason: str, message: str = "") -> None:
        s.finished = True
        self._free(s)  # before the client hears of it: a finished request holds no row
        if reason != "error":
            rest = s.stream.flush()
            if rest:
                s.sink(TokenEvent(s.index, rest, None))
        s.sink(FinishEvent(s.index, reason, s.generated, message))

    def _free(self, s: Sequence) -> None:
        if s.row is not None and self.rows[s.row] is s:
            self.rows[s.row] = None
        s.pending = None


def room_for(prompt_len: int, context: int, max_tokens: int | None) -> int:
    """max_tokens clamped to the positions left after the prompt (None: all of them)."""
    room = context - prompt_len
    if room < 1:
        raise InputError(f"the prompt is {prompt_len} tokens, but the server's context is {context} tokens "
                         "(prompt and reply together); shorten the prompt")
    return room if max_tokens is None else min(max_tokens, room)



