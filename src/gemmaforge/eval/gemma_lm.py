"""`LanguageModel` for gemmaforge models: batched log-likelihoods with shared prefixes, and
batched generation through gemmaforge's engine.

Log-likelihood work is arranged so no token is computed twice when it can be avoided:
- requests are tokenised as lm-eval does (trailing context spaces move to the continuation;
  the continuation's tokens are those of `encode(context + continuation)` after the context's),
  BOS always first; with the chat template the context ends with the template's
  `<start_of_turn>model\n`, which stays in the context (lm-eval would score its "\n");
- a forward row is `context + continuation[:-1]`; requests whose row is a prefix of another's
  (all choices of an MMLU question: one-token answers) share it, so the context runs once;
- rows are sorted by their tokens and cut into runs with a long common prefix (MMLU's subject
  header and five exemplars, a HellaSwag context and its four endings). When the model has a
  KV cache, a run's prefix runs once, batch 1, and only the rows' suffixes run batched; batches
  never straddle two runs. Rows that share nothing are batched together in full;
- only the positions that score a continuation token go through the 262k-way output layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from ..errors import InputError
from ..inference.generate import Decoder, TextStream, prefill
from ..inference.sampling import Sampling
from ..kv_cache import KVCache, common_prefix
from ..model import Gemma
from .lm import GenerateRequest, LoglikRequest, LoglikResult

MIN_SHARED_PREFIX = 32  # tokens; below this a separate prefix pass costs more than it saves
LOGIT_CHUNK = 512  # positions per output-layer call: bounds memory to ~0.5 GB at a 262k vocabulary


@dataclass
class _Row:
    tokens: list[int]
    # (request index, index of the first scored position, target token ids)
    scores: list[tuple[int, int, list[int]]]


class GemmaLM:
    """Adapts a gemmaforge model and tokenizer to the harness's `LanguageModel` protocol."""

    def __init__(self, model: Gemma, tokenizer: Any, *, batch_size: int = 8, chat: bool = False,
                 max_length: int | None = None, name: str = "gemmaforge") -> None:
        self.model = model.eval()
        self.tok = tokenizer
        self.batch_size = batch_size
        self.chat = chat
        self.max_length = max_length or model.config.max_seq_len
        self.name = name

    @classmethod
    def load(cls, source: str, *, dtype: str = "float32", quantize: str | None = None,
             group_size: int | None = None, mix: str | None = None, **kwargs: Any) -> GemmaLM:
        import gemmaforge as gf  # the model and tokenizer modules load torch weights: import lazily

        model = gf.load_model(source, dtype=getattr(torch, dtype), quantize=quantize, group_size=group_size,
                              mix=mix)
        return cls(model, gf.load_tokenizer(source), name=source, **kwargs)

    # -- text -> tokens ------------------------------------------------------------------------
    def _frame(self, text: str) -> str:
        """The prompt as the model sees it: the user turn of the chat template when `chat`."""
        if not self.chat:
            return text
        return self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)

    def _encode_pair(self, req: LoglikRequest) -> tuple[list[int], list[int]]:
        context, continuation = req.context, req.continuation
        if self.chat:
            # The answer opens the model's turn: the task's " " delimiter goes (as lm-eval drops its
            # target delimiter under a chat template), and the template's "\n" after
            # `<start_of_turn>model` stays in the context: it is the template's, not the answer's.
            context, continuation = self._frame(context), continuation.removeprefix(" ")
        else:
            spaces = len(context) - len(context.rstrip())
            if spaces:  # lm-eval: a context's trailing spaces are scored with the continuation
                context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tok.encode(context + continuation, add_bos=True)
        ctx = self.tok.encode(context, add_bos=True)
        if whole[:len(ctx)] != ctx:  # the join merged tokens across the boundary
            return ctx, self.tok.encode(continuation, add_bos=False)
        return ctx, whole[len(ctx):]

    def _rows(self, requests: Sequence[LoglikRequest]) -> tuple[list[_Row], list[int]]:
        """One row per distinct `context + continuation[:-1]`, unless it is a prefix of another; and
        per request, the context tokens cut to fit `max_length`."""
        rows: list[_Row] = []
        dropped = [0] * len(requests)
        by_context: dict[tuple[int, ...], list[_Row]] = {}
        encoded = [self._encode_pair(r) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(encoded[i][1]))  # longest first
        for i in order:
            ctx, cont = encoded[i]
            if not cont:
                raise ValueError(f"empty continuation for context ending {requests[i].context[-40:]!r}")
            if len(cont) > self.max_length:
                raise InputError(f"a continuation of {len(cont)} tokens ({requests[i].continuation[:40]!r}) does "
                                 f"not fit max_length {self.max_length} (--max-length)")
            tokens = ctx + cont[:-1]
            overflow = len(tokens) - self.max_length
            if overflow > 0:  # keep BOS, drop the oldest context tokens
                tokens = tokens[:1] + tokens[1 + overflow:]
                dropped[i] = overflow
            start = len(tokens) - len(cont)
            group = by_context.setdefault(tuple(tokens[:start + 1]), [])
            row = next((r for r in group if r.tokens[:len(tokens)] == tokens), None)
            if row is None:
                row = _Row(tokens, [])
                group.append(row)
                rows.append(row)
            row.scores.append((i, start, cont))
        return rows, dropped

    # -- log-likelihood ------------------------------------------------------------------------
    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[LoglikRequest]) -> list[LoglikResult]:
        results: list[LoglikResult | None] = [None] * len(requests)
        rows, dropped = self._rows(requests)
        longest = max((len(r.tokens) for r in rows), default=0)
        work: list[tuple[int, list[_Row]]] = []  # (shared prefix length, batch)
        for shared, group in self._prefix_groups(rows):
            work += [(shared, group[i:i + self.batch_size]) for i in range(0, len(group), self.batch_size)]
        prefix: tuple[list[int], Any] | None = None  # (tokens, one-row KV cache after them)
        bar = tqdm(total=len(requests), desc="loglikelihood", unit="request", leave=False)
        for shared, batch in work:
            if shared:
                if prefix is None or prefix[0] != batch[0].tokens[:shared]:
                    prefix = (batch[0].tokens[:shared], self._prefill(batch[0].tokens[:shared], longest))
                hidden = self._forward([r.tokens[shared:] for r in batch], prefix[1].repeat(len(batch)))
            else:
                hidden = self._forward([r.tokens for r in batch])
            self._score(batch, hidden, shared, results)
            bar.update(sum(len(r.scores) for r in batch))
        bar.close()
        return [dataclasses.replace(r, context_dropped=d) for r, d in zip(results, dropped)]  # type: ignore[arg-type]

    def _prefix_groups(self, rows: list[_Row]) -> list[tuple[int, list[_Row]]]:
        """Rows sorted by tokens, cut into runs that share at least MIN_SHARED_PREFIX tokens
        (ending before any scored position), as (prefix length, rows). Rows in no run are pooled
        under prefix length 0, so they still batch together."""
        runs: list[tuple[int, list[_Row]]] = []
        for row in sorted(rows, key=lambda r: r.tokens):
            row_limit = min(start for _, start, _ in row.scores)
            if runs:
                shared, run = runs[-1]
                common = min(shared, row_limit, common_prefix(run[-1].tokens, row.tokens))
                if common >= MIN_SHARED_PREFIX:
                    run.append(row)
                    runs[-1] = (common, run)
                    continue
            runs.append((row_limit, [row]))
        shared = [(n, run) for n, run in runs if len(run) > 1]
        loners = [r for n, run in runs if len(run) == 1 for r in run]
        groups = shared + ([(0, loners)] if loners else [])
        return [(n, sorted(run, key=lambda r: len(r.tokens))) for n, run in groups]  # less padding

    def _prefill(self, tokens: list[int], max_len: int) -> KVCache:
        cache = self.model.new_cache(1, max_len)
        prefill(self.model, torch.tensor([tokens]), None, cache)  # chunked: no context-squared mask
        return cache

    def _forward(self, seqs: Sequence[list[int]], cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states [B, T, d_model], right-padded."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tok.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return self.model(ids, attention_mask=mask, cache=cache, logits_at="none")

    def _score(self, batch: Sequence[_Row], hidden: torch.Tensor, offset: int,
               results: list[LoglikResult | None]) -> None:
        """Log-probabilities of each request's continuation tokens, from positions `start - offset`."""
        index, targets, spans = [], [], []
        for b, row in enumerate(batch):
            for req, start, cont in row.scores:
                spans.append((req, len(index), len(cont)))
                index += [(b, start - offset + j) for j in range(len(cont))]
                targets += cont
        rows_idx = torch.tensor([b for b, _ in index])
        pos_idx = torch.tensor([p for _, p in index])
        target = torch.tensor(targets)
        logp = torch.empty(len(index))
        greedy = torch.empty(len(index), dtype=torch.bool)
        for lo in range(0, len(index), LOGIT_CHUNK):
            sel = hidden[rows_idx[lo:lo + LOGIT_CHUNK], pos_idx[lo:lo + LOGIT_CHUNK]]
            logits = self.model.logits(sel).float()
            lp = torch.log_softmax(logits, dim=-1)
            t = target[lo:lo + LOGIT_CHUNK]
            logp[lo:lo + LOGIT_CHUNK] = lp.gather(-1, t[:, None])[:, 0]
            greedy[lo:lo + LOGIT_CHUNK] = lp.argmax(-1) == t
        for req, at, n in spans:
            results[req] = LoglikResult(float(logp[at:at + n].sum()), bool(greedy[at:at + n].all()), n)

    # -- generation ----------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerateRequest]) -> list[list[str]]:
        """Requests with the same settings run together, longest prompts first, `batch_size` at a
        time through gemmaforge's engine. Sample j of request i draws from its own random stream
        (the request's seed, sample id i * n + j), so n samples of a prompt differ and each is the
        same whatever else shares its batch. (`max_length` bounds log-likelihood rows; generation
        uses the model's context.)"""
        out: list[list[str]] = [[""] * r.n for r in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_new_tokens, r.stop, r.temperature, r.seed, r.options), []).append(i)
        work = []
        for (max_new, stop, temperature, seed, options), idx in groups.items():
            sampling = Sampling(temperature=temperature, seed=seed, **dict(options))
            jobs = [(i, j, self._frame(requests[i].prompt)) for i in idx for j in range(requests[i].n)]
            jobs.sort(key=lambda job: -len(job[2]))
            step = self.batch_size
            work += [(jobs[k:k + step], max_new, stop, sampling) for k in range(0, len(jobs), step)]
        bar = tqdm(total=sum(r.n for r in requests), desc="generate", unit="completion", leave=False)
        for batch, max_new, stop, sampling in work:
            texts = self._complete([p for _, _, p in batch], max_new, stop, sampling,
                                   [i * requests[i].n + j for i, j, _ in batch], bar)
            for (i, j, _), text in zip(batch, texts):
                out[i][j] = text
        bar.close()
        return out

    def _complete(self, prompts: list[str], max_new: int, stop: Sequence[str], sampling: Sampling,
                  sample_ids: list[int], bar: tqdm) -> list[str]:
        """`gf.generate` on one batch (the same engine, stop handling and random streams), ticking
        `bar` as each row finishes, so a batch that runs for minutes shows its progress. A prompt
        too long for the context loses its oldest tokens (BOS kept)."""
        ids = [self.tok.encode(p) for p in prompts]
        stop_ids = {self.tok.eos_id, getattr(self.tok, "end_of_turn_id", self.tok.eos_id)}
        dec = Decoder(self.model, ids, max_new, sampling, stop_ids, truncate=True, sample_ids=sample_ids)
        streams = [TextStream(self.tok, stop) for _ in prompts]
        running = set(range(len(prompts)))
        for step in dec:
            for row, tok in enumerate(step):
                if tok is not None and tok not in stop_ids:
                    streams[row].push(tok)
                    if streams[row].stopped:
                        dec.finish(row)
                if row in running and dec.done[row]:
                    running.discard(row)
                    bar.update(1)
        bar.update(len(running))  # rows that ran to max_new_tokens
        for s in streams:
            s.flush()
        return [s.text for s in streams]
