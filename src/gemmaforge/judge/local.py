"""A judge that is a local model: the verdict is read from the next-token probabilities of the
answer labels ("A", "B") right after the judging prompt, in the model's chat template.

Reading probabilities instead of parsing generated text gives a graded preference, never fails to
parse, and costs one forward pass per order. The two label probabilities are renormalised (the
model may put mass elsewhere; how much it put on the labels is reported as `mass_*`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

from .prompt import LABELS, JudgePrompt
from .types import JudgeError, JudgeItem, Judgement, combine


class LocalJudge:
    """Judges with any gemmaforge model and its tokenizer; prompts run in left-padded batches."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, prompt: JudgePrompt, *, batch_size: int = 4,
                 name: str = "local", progress: bool = False) -> None:
        self.model, self.tok, self.prompt = model.eval(), tokenizer, prompt
        self.batch_size, self.name, self.progress = batch_size, name, progress
        self.label_ids = [self._single_token(label) for label in LABELS]

    def _single_token(self, label: str) -> int:
        ids = self.tok.encode(label, add_bos=False)
        if len(ids) != 1:
            raise JudgeError(f"judge {self.name}: the answer label {label!r} is {len(ids)} tokens in its "
                             "vocabulary; a probability judge needs one token per label")
        return ids[0]

    def render(self, item: JudgeItem, swapped: bool) -> list[int]:
        """Token ids of the judging prompt for one order, ending where the answer label goes."""
        text = self.tok.apply_chat_template([{"role": "user", "content": self.prompt.render(item, swapped)}],
                                            add_generation_prompt=True)
        ids = self.tok.encode(text, add_bos=True)
        limit = self.model.config.max_seq_len
        if len(ids) > limit:
            raise JudgeError(f"judge {self.name}: a judging prompt is {len(ids)} tokens, more than the judge's "
                             f"context of {limit} (prompt {item.prompt[:60]!r}); shorten the responses")
        return ids

    def judge(self, items: list[JudgeItem]) -> list[Judgement]:
        seqs = [self.render(item, swapped) for item in items for swapped in (False, True)]
        probs = self.label_probs(seqs)  # [2 * len(items), 2]: P(label) over the whole vocabulary
        out = []
        for i, item in enumerate(items):
            (fa, fb), (sa, sb) = probs[2 * i].tolist(), probs[2 * i + 1].tolist()
            # first order: response_a is "A"; second order: response_a is "B"
            out.append(combine(item, _share(fa, fb), _share(sb, sa), mass_first=fa + fb, mass_second=sa + sb))
        return out

    @torch.inference_mode()
    def label_probs(self, seqs: Sequence[list[int]]) -> torch.Tensor:
        """P(label | prompt) for each prompt and label, [N, len(LABELS)], in float64 for the ratio.
        Prompts run longest first in left-padded batches, so each batch pads little."""
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        out = torch.empty(len(seqs), len(LABELS), dtype=torch.float64)
        device = self.model.embed.weight.device
        batches = [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="judge", unit="batch", leave=False, disable=not self.progress):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), self.tok.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(batch):  # left padding: every prompt ends at the last column
                ids[row, width - len(seqs[i]):] = torch.tensor(seqs[i])
                mask[row, width - len(seqs[i]):] = 1
            logits = self.model(ids.to(device), attention_mask=mask.to(device), logits_at="last")[:, -1]
            logp = torch.log_softmax(logits.double(), dim=-1)[:, self.label_ids]
            out[batch] = logp.exp().cpu()
        return out


def _share(p_first_label: float, p_other: float) -> float:
    """The renormalised probability of one label against the other (0.5 if both are zero)."""
    total = p_first_label + p_other
    return p_first_label / total if total > 0 else 0.5
