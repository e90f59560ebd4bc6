"""Objectives on preference pairs: a Bradley–Terry reward model and DPO (sigmoid, IPO, robust).

Both take batches of `preference_data` items and weight micro-batches by pairs (the TOKENS metric
counts pairs), so a step's loss is the mean over its pairs, as TRL's trainers compute it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model import Gemma
from .modules import backbone
from .objective import TOKENS
from .preference_data import split_sides

LOGIT_CHUNK = 256  # completion positions per output-layer call (bounds the 262k-way logits)


def token_logprobs(gemma: Gemma, hidden: torch.Tensor, ids: torch.Tensor, completion: torch.Tensor,
                   with_entropy: bool = False, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(ids[t] | ids[:t]) at every completion position t, zero elsewhere: [rows, T] (position 0
    is never a completion); with `with_entropy`, also each of those positions' entropy (no grad).
    p is softmax(logits / temperature): RL scores its samples under the distribution they were drawn from.

    Only completion positions go through the output layer, a chunk at a time, each chunk's logits
    recomputed in backward rather than kept (a 262k vocabulary makes them the largest tensors)."""
    targets, scored = ids[:, 1:], completion[:, 1:].bool()
    h, t = hidden[:, :-1][scored], targets[scored]

    def chunk(h_chunk: torch.Tensor, t_chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(gemma.logits(h_chunk).float() / temperature, -1)
        plain = logp.detach()
        entropy = -(plain.exp() * plain).sum(-1) if with_entropy else plain.new_zeros(0)
        return logp.gather(-1, t_chunk[:, None])[:, 0], entropy

    run = (lambda a, b: checkpoint(chunk, a, b, use_reentrant=False)) if torch.is_grad_enabled() else chunk
    parts = [run(h[i:i + LOGIT_CHUNK], t[i:i + LOGIT_CHUNK]) for i in range(0, len(t), LOGIT_CHUNK)]
    out = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    entropy = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device) if with_entropy else None
    if parts:
        out[:, 1:][scored] = torch.cat([p[0] for p in parts])
        if entropy is not None:
            entropy[:, 1:][scored] = torch.cat([p[1] for p in parts])
    return out, entropy


def sequence_logprobs(gemma: Gemma, hidden: torch.Tensor, ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    """Sum over each row's completion tokens of log p(token | everything before it): [rows]."""
    return token_logprobs(gemma, hidden, ids, completion)[0].sum(1)


def policy_logprobs(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """[B, 2] (chosen, rejected) completion log-probabilities of a batch of pairs under `model`."""
    ids, attention, completion, _ = split_sides(batch)
    hidden = model(ids, attention_mask=attention, logits_at="none")
    logps = sequence_logprobs(backbone(model), hidden, ids, completion)
    return torch.stack(logps.chunk(2), 1)


class RewardObjective:
    """Bradley–Terry: -log sigmoid(r(chosen) - r(rejected) - margin), the reward read by a
    scalar head at each sequence's last real token (`ModelWithHead(gemma, 1, "last")`)."""

    def __init__(self, margin: float = 0.0) -> None:
        self.margin = margin

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        ids, attention, _, _ = split_sides(batch)
        chosen, rejected = model(ids, attention)[:, 0].float().chunk(2)
        diff = chosen - rejected
        loss = -F.logsigmoid(diff - self.margin).mean()
        d = diff.detach()
        return loss, {TOKENS: float(len(batch)), "accuracy": float((d > 0).float().mean()), "margin": float(d.mean()),
                      "reward_mean": float(torch.cat([chosen, rejected]).detach().mean())}

    def tokens(self, batch: torch.Tensor) -> int:
        return len(batch)  # pairs: the loss is a mean over pairs


LOSSES = ("sigmoid", "ipo", "robust")


class DpoObjective:
    """Direct preference optimisation against fixed reference log-probabilities (`reference[i]` =
    (chosen, rejected) of pair i, computed once from the starting policy).

    sigmoid: -log σ(β Δ) (Rafailov et al.); ipo: (Δ/len − 1/(2β))² with log-ratios averaged over
    completion tokens (Azar et al., as TRL normalises); robust: label-smoothed sigmoid corrected for
    a flip rate ε (Chowdhury et al.). Δ = (log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))."""

    def __init__(self, reference: torch.Tensor, beta: float = 0.1, loss_type: str = "sigmoid",
                 label_smoothing: float = 0.0) -> None:
        self.reference, self.beta, self.loss_type, self.eps = reference, beta, loss_type, label_smoothing

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logps = policy_logprobs(model, batch)
        ref = self.reference.to(logps.device)[batch[:, 0, 3, 0]]
        ratios = logps - ref  # [B, 2] log π/π_ref of chosen, rejected
        delta = ratios[:, 0] - ratios[:, 1]
        if self.loss_type == "sigmoid":
            per_pair = -F.logsigmoid(self.beta * delta)
        elif self.loss_type == "ipo":
            lengths = batch[:, :, 2].sum(-1).clamp(min=1).float()  # completion tokens of each side
            avg = ratios / lengths
            per_pair = (avg[:, 0] - avg[:, 1] - 1 / (2 * self.beta)) ** 2
        else:  # robust
            e = self.eps
            per_pair = (-(1 - e) * F.logsigmoid(self.beta * delta) + e * F.logsigmoid(-self.beta * delta)) / (1 - 2 * e)
        rewards = self.beta * ratios.detach()
        return per_pair.mean(), {
            TOKENS: float(len(batch)), "accuracy": float((rewards[:, 0] > rewards[:, 1]).float().mean()),
            "reward_chosen": float(rewards[:, 0].mean()), "reward_rejected": float(rewards[:, 1].mean()),
            "margin": float((rewards[:, 0] - rewards[:, 1]).mean()),
            "logp_chosen": float(logps[:, 0].detach().mean()), "logp_rejected": float(logps[:, 1].detach().mean())}

    def tokens(self, batch: torch.Tensor) -> int:
        return len(batch)


@torch.no_grad()
def reference_logprobs(model: nn.Module, items: torch.Tensor, micro_batch: int) -> torch.Tensor:
    """[N, 2] completion log-probabilities of every item under `model` as it is now (the starting
    policy: with LoRA, the base, since fresh adapters add nothing), so no second copy of the
    weights is needed while training. Indexed by the items' pair index."""
    was_training = model.training
    model.eval()
    out = torch.zeros(int(items[:, 0, 3, 0].max()) + 1, 2)
    for i in range(0, len(items), micro_batch):
        batch = items[i:i + micro_batch]
        out[batch[:, 0, 3, 0]] = policy_logprobs(model, batch.to(backbone(model).embed.weight.device)).cpu()
    model.train(was_training)
    return out
