"""Perplexity filter: a reference language model scores each document; outliers are dropped.

CCNet-style: text the reference model finds very surprising (garbled, machine-made) has high
perplexity; near-zero perplexity flags boilerplate. Any model with `model(ids[B,T]) -> logits[B,T,V]`
and any tokenizer with `encode(text, add_bos=True)` works; by default the shipped gemma3-270m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError
from .base import Drop, Verdict


@dataclass
class PerplexityFilter:
    """Keeps documents with min_perplexity <= ppl(first max_tokens tokens) <= max_perplexity.

    Memory per forward pass is batch_size * max_tokens * vocab * 4 bytes of logits (gemma3-270m,
    8 x 256 tokens: 2.1 GB), so keep batches small on CPU.
    """

    name: ClassVar[str] = "perplexity"
    model: str = "gemma3-270m"  # any gemmaforge.load_model source
    tokenizer: str = ""  # any gemmaforge.load_tokenizer source; empty: same as `model`
    # gemma3-270m, first 128 tokens: prose, code and set.mm score 8-124, shuffled words 680-940.
    max_perplexity: float = 300.0
    min_perplexity: float = 0.0
    max_tokens: int = 256
    batch_size: int = 4
    _model: Any = field(default=None, repr=False, compare=False)
    _tokenizer: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._model is None or self._tokenizer is None:
            from ...tokenizer.tokenizer import load_tokenizer
            from ...weights import load_model

            self._model = load_model(self.model)
            self._tokenizer = load_tokenizer(self.tokenizer or self.model)
        self._model.eval()
        self._check_vocab()

    def _check_vocab(self) -> None:
        """Ids past the model's vocabulary would crash its embedding lookup mid-run; refuse them now.

        A tokenizer smaller than the model is fine (Gemma pads its vocabulary). The model's size is read
        from one forward pass, the only thing the `model(ids) -> logits` contract promises.
        """
        import torch

        tok_vocab = getattr(self._tokenizer, "vocab_size", None)
        with torch.no_grad():
            model_vocab = int(self._model(torch.zeros(1, 1, dtype=torch.long)).shape[-1])
        if tok_vocab is not None and tok_vocab > model_vocab:
            raise DataError(f"the tokenizer has {tok_vocab} ids but the model's vocabulary only {model_vocab}; "
                            "give the tokenizer the model was trained with")

    def perplexities(self, texts: Sequence[str]) -> np.ndarray:
        """Per-document perplexity; NaN for documents shorter than two tokens."""
        import torch

        ids = [self._tokenizer.encode(t, add_bos=True)[: self.max_tokens] for t in texts]
        out = np.full(len(texts), np.nan)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths pad less
        order = [i for i in order if len(ids[i]) >= 2]
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(ids[i]) for i in batch)
            x = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width - 1)
            for row, i in enumerate(batch):
                x[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i]) - 1] = 1
            with torch.no_grad():
                # Right padding is safe: causal attention never lets a real token see the pads.
                logp = torch.log_softmax(self._model(x)[:, :-1].float(), dim=-1)
                nll = -logp.gather(-1, x[:, 1:, None])[..., 0] * mask
                mean = nll.sum(1) / mask.sum(1)
            out[batch] = torch.exp(mean).numpy()
        return out

    def apply(self, texts: Sequence[str]) -> list[Verdict]:
        out: list[Verdict] = []
        for t, ppl in zip(texts, self.perplexities(texts)):
            if math.isnan(ppl):
                out.append(t)
            elif ppl > self.max_perplexity:
                out.append(Drop("high_perplexity", f"{ppl:.1f} > {self.max_perplexity}"))
            elif ppl < self.min_perplexity:
                out.append(Drop("low_perplexity", f"{ppl:.1f} < {self.min_perplexity}"))
            else:
                out.append(t)
        return out
