"""Policy-gradient losses on rollouts: advantages (RLOO, GRPO), KL estimators, the clipped surrogate.

A rollout batch is a dict of tensors: `ids`, `attention`, `completion` [B, T] (the sampled tokens
and their `<end_of_turn>` are the completion), `old_logp` and `ref_logp` [B, T] (per token, from
the engine and from the reference; zero outside the completion), `advantage` [B] and `kl_coef`
(a scalar: β when these rollouts were drawn, which an adaptive controller changes between steps);
plus scalar rollout metrics (`rollout/…`) that the objective passes on to the log.
"""

from __future__ import annotations

import torch
from torch import nn

from .modules import backbone
from .objective import TOKENS
from .preference import token_logprobs

KL_ESTIMATORS = ("k1", "k3")


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """[P, k] rewards of k samples per prompt -> each minus the mean of the other k - 1
    (Ahmadian et al. 2024: REINFORCE with a leave-one-out baseline)."""
    k = rewards.shape[-1]
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """[P, k] -> rewards normalised within each prompt's group (Shao et al. 2024): (r - mean) / (std + eps),
    the standard deviation unbiased as TRL computes it."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + eps)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over each row's masked positions
    [B, T]: returns (advantages, returns = advantages + values), zero outside the mask."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(running)
    for t in range(rewards.shape[1] - 1, -1, -1):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = torch.where(m, delta + gamma * lam * running, running)
        next_value = torch.where(m, values[:, t], next_value)
        advantages[:, t] = torch.where(m, running, torch.zeros_like(running))
    return advantages, (advantages + values) * mask


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from samples of π (Schulman 2020): k1 = log π − log π_ref
    (unbiased, noisy, can be negative); k3 = (r − 1) − log r with r = π_ref/π (unbiased, ≥ 0)."""
    log_ratio = ref_logp - logp
    if estimator == "k1":
        return -log_ratio
    return torch.expm1(log_ratio) - log_ratio


class PolicyGradientObjective:
    """The clipped importance-weighted surrogate of PPO/GRPO, token-level mean over the step's
    completion tokens: −min(ρ A, clip(ρ, 1 − ε, 1 + ε) A), ρ = π/π_old per token, plus β·KL to the
    reference when the KL is a loss term (`kl_in_loss`; otherwise it was subtracted from the reward),
    β being the batch's `kl_coef`. π is softmax(logits / `temperature`), the rollouts' sampling
    temperature, as the engine's `old_logp` and the reference's `ref_logp` are.
    Advantages are per sequence [B] (RLOO, GRPO) or per token [B, T] (PPO); with `returns` in the
    batch (PPO) the value head is trained too: vf_coef · ½ max((V − R)², (clip(V, V_old ± ε) − R)²)."""

    def __init__(self, clip: float = 0.2, kl_in_loss: bool = False, kl_estimator: str = "k3",
                 vf_coef: float = 0.1, value_clip: float = 0.2, temperature: float = 1.0) -> None:
        self.clip, self.kl_in_loss, self.kl_estimator = clip, kl_in_loss, kl_estimator
        self.vf_coef, self.value_clip, self.temperature = vf_coef, value_clip, temperature

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        ids, mask = batch["ids"], batch["completion"].float()
        critic = "returns" in batch
        extra = {"with_values": True} if critic else {}
        out = model(ids, attention_mask=batch["attention"], logits_at="none", **extra)
        hidden, values = out if critic else (out, None)
        logp, entropy = token_logprobs(backbone(model), hidden, ids, batch["completion"], with_entropy=True,
                                       temperature=self.temperature)
        ratio = torch.exp(logp - batch["old_logp"]) * mask
        adv = batch["advantage"] if batch["advantage"].dim() == 2 else batch["advantage"][:, None]
        clipped = ratio.clamp(1 - self.clip, 1 + self.clip)
        per_token = -torch.minimum(ratio * adv, clipped * adv)
        kl = kl_estimate(logp, batch["ref_logp"], self.kl_estimator) * mask
        if self.kl_in_loss:
            per_token = per_token + batch["kl_coef"] * kl
        n = mask.sum().clamp(min=1)
        loss = (per_token * mask).sum() / n
        value_loss = None
        if values is not None:
            old, returns = batch["old_values"], batch["returns"]
            clipped_v = old + (values - old).clamp(-self.value_clip, self.value_clip)
            per_value = 0.5 * torch.maximum((values - returns) ** 2, (clipped_v - returns) ** 2)
            value_loss = (per_value * mask).sum() / n
            loss = loss + self.vf_coef * value_loss
        with torch.no_grad():
            clip_frac = (((ratio - 1).abs() > self.clip).float() * mask).sum() / n
            metrics = {TOKENS: float(mask.sum()), "kl": float(kl.detach().sum() / n),
                       "entropy": float((entropy * mask).sum() / n), "clip_fraction": float(clip_frac)}
            if value_loss is not None:
                metrics["value_loss"] = float(value_loss)
        metrics.update({k: float(v) for k, v in batch.items() if k.startswith("rollout/")})
        return loss, metrics

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["completion"].sum())
