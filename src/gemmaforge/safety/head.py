"""The classifier head: standardised features -> logistic regression, plus ROC AUC and its file format.

Logistic regression is fitted full-batch with L-BFGS (the problem is convex and small: a few
thousand rows of 1,280 features), so the same data always gives the same head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..util.paths import write_atomic

WEIGHTS_FILE, META_FILE = "head.safetensors", "head.json"


@dataclass
class Head:
    mean: torch.Tensor  # [F] feature means of the training set
    std: torch.Tensor  # [F] feature standard deviations (floored)
    weight: torch.Tensor  # [F]
    bias: torch.Tensor  # [] scalar

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std) @ self.weight + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probability of the positive (unsafe) class, one per row."""
        return torch.sigmoid(self.logits(x))


def fit(x: torch.Tensor, y: torch.Tensor, l2: float, max_iter: int = 200) -> Head:
    """L2-regularised logistic regression on standardised features (classes weighted equally)."""
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    pos = y.sum().clamp_min(1)
    neg = (len(y) - y.sum()).clamp_min(1)
    sample_w = torch.where(y > 0.5, 0.5 / pos, 0.5 / neg)  # balanced: each class counts half
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, reduction="none")
                * sample_w).sum() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Head(mean, std, w.detach(), b.detach())


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties half."""
    scores, labels = scores.double(), labels.bool()
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs both classes")
    ranks = _average_ranks(torch.cat([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied values sharing their mean rank."""
    values, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return (ends - (counts.double() - 1) / 2)[inverse]


def save(head: Head, directory: Path, threshold: float, meta: dict) -> None:
    from safetensors.torch import save as st_save

    tensors = {"mean": head.mean, "std": head.std, "weight": head.weight, "bias": head.bias.reshape(1)}
    write_atomic(directory / WEIGHTS_FILE, st_save({k: v.contiguous() for k, v in tensors.items()}))
    write_atomic(directory / META_FILE, (json.dumps({**meta, "threshold": threshold}, indent=2) + "\n").encode())


def load(directory: Path) -> tuple[Head, dict]:
    from safetensors.torch import load_file

    t = load_file(str(directory / WEIGHTS_FILE))
    meta = json.loads((directory / META_FILE).read_text("utf-8"))
    return Head(t["mean"], t["std"], t["weight"], t["bias"][0]), meta
