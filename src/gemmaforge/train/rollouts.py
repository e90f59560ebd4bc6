"""On-policy step data for RL: each step samples k completions per prompt from the current policy
through gemmaforge's batched KV-cache engine, scores them, and hands the Trainer packed rollouts.

Step s takes prompts [s·P, (s+1)·P) of a seeded endless shuffle (a pure function of s, like every
step data); the samples are drawn with the policy's current weights, each from its own stream
seeded by (run seed + s, sample index), so a resumed run re-draws the same samples from the same
restored weights. The engine records each sampled token's log-probability once; the reference's
come from one forward pass (with LoRA, the same weights with the adapters off). With `epochs` > 1
(GRPO's several passes), step s reuses the rollouts drawn at step s − s mod epochs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..inference.generate import Decoder
from ..inference.sampling import Sampling
from .errors import TrainError
from .kl_control import KLController
from .lora import adapters_disabled, lora_layers
from .modules import backbone
from .preference import token_logprobs
from .rewards import RewardSpec, Scorer, total_rewards
from .rl_objective import gae, grpo_advantages, kl_estimate, rloo_advantages


@dataclass(frozen=True)
class Prompt:
    text: str  # the user's message
    meta: dict  # passed to reward functions (answers, reasoning-gym entries)


@dataclass(frozen=True)
class RolloutSettings:
    algorithm: str  # "rloo" | "grpo" | "ppo"
    prompts_per_step: int
    k: int
    max_new_tokens: int
    temperature: float
    micro_batch: int
    epochs: int = 1
    kl_coef: float = 0.0  # β (its starting value when kl_target is set)
    kl_in_loss: bool = False
    kl_estimator: str = "k1"
    no_eos_penalty: float = 0.0  # subtracted from the reward of a reply that never ended
    seed: int = 0
    kl_target: float | None = None  # set: β adapts towards it (kl_control.py)
    kl_horizon: float = 10000.0
    prompt_format: str = "chat"  # "chat": the prompt is a user turn; "plain": its text as is, after <bos>
    stop: tuple[str, ...] = ()  # a reply also ends at a sampled token whose text holds one of these


def stop_token_ids(tok: Any, stop: Sequence[str]) -> set[int]:
    """<eos>, <end_of_turn> and every token whose text contains one of `stop` (e.g. "\n": each of
    Gemma 3's newline tokens, from "\n" to long runs of them)."""
    ids = {tok.eos_id, tok.end_of_turn_id}
    if stop:
        ids |= {i for i in range(tok.vocab_size) if any(s in tok.decode([i]) for s in stop)}
    return ids


def render_prompt(tok: Any, text: str, prompt_format: str = "chat") -> list[int]:
    """A prompt's token ids: a user turn opening the model's turn, or (base models) the plain text."""
    if prompt_format == "plain":
        return tok.encode(text, add_bos=True)
    return tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]))


class Rollouts:
    on_policy = True

    def __init__(self, prompts: Sequence[Prompt], tokenizer: Any, specs: Sequence[RewardSpec],
                 scorers: Sequence[Scorer], settings: RolloutSettings, reference: nn.Module | None = None) -> None:
        self.prompts, self.tok, self.specs, self.scorers, self.s = list(prompts), tokenizer, specs, scorers, settings
        self.reference = reference  # a frozen copy, for full fine-tuning; None: the policy with adapters off
        self._cache: tuple[int, list[dict]] | None = None
        self.order = np.random.default_rng(settings.seed).permutation(len(self.prompts))
        self.stop_ids = stop_token_ids(tokenizer, settings.stop)
        self.kl = KLController(settings.kl_coef, settings.kl_target, settings.kl_horizon)
        self._group_coef = settings.kl_coef  # β the cached rollouts were shaped with

    # -- the StepData contract ---------------------------------------------------------------
    def position(self, step: int) -> int:
        return step * self.s.prompts_per_step

    def state(self, step: int) -> dict[str, Any]:
        """What a checkpoint before `step` must restore for the rollouts to come out the same: β for
        step's rollouts (the cached group's when `step` reuses them, with `epochs` > 1)."""
        return {"kl_coef": self.kl.value if step % self.s.epochs == 0 else self._group_coef}

    def load_state(self, state: dict[str, Any]) -> None:
        if self.kl.target is not None and "kl_coef" in state:  # a fixed β follows the config
            self.kl.value = float(state["kl_coef"])

    def identity(self) -> dict[str, Any]:
        return {"prompts": len(self.prompts), "prompts_per_step": self.s.prompts_per_step, "k": self.s.k,
                "algorithm": self.s.algorithm, "seed": self.s.seed}

    def micro_batches(self, step: int, model: nn.Module) -> list[dict[str, torch.Tensor]]:
        first = step - step % self.s.epochs
        if self._cache is None or self._cache[0] != first:
            self._cache = (first, self.collect(first, model))
        return self._cache[1]

    # -- rollouts ----------------------------------------------------------------------------
    def check_room(self, prompts: Sequence[Prompt], context: int) -> None:
        """Every prompt, rendered, must leave room for a full reply in the model's context."""
        for p in prompts:
            n = len(render_prompt(self.tok, p.text, self.s.prompt_format))
            if n + self.s.max_new_tokens > context:
                raise TrainError(f"prompt {p.text[:60]!r} is {n} tokens: with rl.max_new_tokens = "
                                 f"{self.s.max_new_tokens} it leaves no room in the model's context of {context}")

    def step_prompts(self, step: int) -> list[Prompt]:
        n = self.s.prompts_per_step
        return [self.prompts[self.order[(step * n + i) % len(self.prompts)]] for i in range(n)]

    def collect(self, step: int, model: nn.Module) -> list[dict[str, torch.Tensor]]:
        started = time.perf_counter()
        gemma = backbone(model)
        prompts = self.step_prompts(step)
        k = self.s.k
        rendered = [render_prompt(self.tok, p.text, self.s.prompt_format) for p in prompts]
        was_training = gemma.training
        gemma.eval()
        dec = Decoder(gemma, [r for r in rendered for _ in range(k)], self.s.max_new_tokens,
                      Sampling(temperature=self.s.temperature, seed=self.s.seed + step),
                      stop_ids=self.stop_ids, logprobs=True)
        samples: list[list[int]] = [[] for _ in range(len(rendered) * k)]
        for tokens in dec:
            for row, t in enumerate(tokens):
                if t is not None:
                    samples[row].append(t)
        gemma.train(was_training)
        rollout_s = time.perf_counter() - started
        finished = [bool(s) and s[-1] in dec.stop_ids for s in samples]
        texts = [self.tok.decode(s[:-1] if f else s) for s, f in zip(samples, finished)]
        flat_prompts = [p for p in prompts for _ in range(k)]
        rewards, parts = total_rewards(self.specs, self.scorers, [p.text for p in flat_prompts], texts,
                                       [p.meta for p in flat_prompts])
        score = torch.tensor(rewards) - self.s.no_eos_penalty * (~torch.tensor(finished)).float()
        batch = self._pack([rendered[i // k] for i in range(len(samples))], samples, dec.logprobs)
        with torch.no_grad():
            ref = self._reference_logprobs(model, batch)
        per_token_kl = kl_estimate(batch["old_logp"], ref, self.s.kl_estimator) * batch["completion"]
        kl = per_token_kl.sum(1)
        coef = self.kl.value
        if self.s.algorithm == "ppo":
            batch.update(self._ppo_targets(model, batch, score, per_token_kl, coef))
            adv = batch.pop("advantage")
        else:
            shaped = score if self.s.kl_in_loss else score - coef * kl
            grouped = shaped.view(len(prompts), k)
            adv = (rloo_advantages if self.s.algorithm == "rloo" else grpo_advantages)(grouped).reshape(-1)
        generated = sum(len(s) for s in samples)
        metrics = {"rollout/reward": float(torch.tensor(rewards).mean()), **parts,
                   "rollout/kl": float(kl.mean()), "rollout/length": generated / len(samples),
                   "rollout/finished": sum(finished) / len(samples),
                   "rollout/tok_s": generated / max(rollout_s, 1e-9), "rollout/s": rollout_s,
                   "rollout/kl_coef": coef}
        self.kl.update(float(kl.mean()), len(samples))
        self._group_coef = coef
        self.last = {"texts": texts, "rewards": rewards, "prompts": [p.text for p in flat_prompts]}
        batch.update(ref_logp=ref, advantage=adv)
        return [{**{name: t[i:i + self.s.micro_batch] for name, t in batch.items()},
                 **{name: torch.tensor(v) for name, v in metrics.items()}, "kl_coef": torch.tensor(coef)}
                for i in range(0, len(samples), self.s.micro_batch)]

    @torch.no_grad()
    def _ppo_targets(self, model: nn.Module, batch: dict[str, torch.Tensor], score: torch.Tensor,
                     per_token_kl: torch.Tensor, coef: float) -> dict[str, torch.Tensor]:
        """PPO's per-token targets: rewards −β·KL at every completion token plus the score at the
        last one, the critic's values before the update, GAE advantages (whitened over the step's
        completion tokens) and returns."""
        device = backbone(model).embed.weight.device
        was = model.training
        model.eval()
        values = []
        for i in range(0, len(batch["ids"]), self.s.micro_batch):
            part = {k: v[i:i + self.s.micro_batch].to(device) for k, v in batch.items()}
            values.append(model(part["ids"], attention_mask=part["attention"], with_values=True)[1].cpu())
        model.train(was)
        completion = batch["completion"].bool()
        old_values = torch.cat(values) * completion
        rewards = -coef * per_token_kl
        last = completion.long().cumsum(1).argmax(1)  # each row's last completion position
        rewards[torch.arange(len(score)), last] += score
        advantages, returns = gae(rewards, old_values, completion)
        picked = advantages[completion]
        advantages = (advantages - picked.mean()) / (picked.std() + 1e-8) * completion
        return {"old_values": old_values, "returns": returns, "advantage": advantages}

    @staticmethod
    def _pack(prompts: list[list[int]], samples: list[list[int]], logprobs: list[list[float]]) -> dict:
        width = max(len(p) + len(s) for p, s in zip(prompts, samples))
        n = len(samples)
        ids = torch.zeros(n, width, dtype=torch.long)
        attention, completion = torch.zeros_like(ids), torch.zeros_like(ids)
        old = torch.zeros(n, width)
        for i, (p, s, lp) in enumerate(zip(prompts, samples, logprobs)):
            ids[i, :len(p) + len(s)] = torch.tensor(p + s)
            attention[i, :len(p) + len(s)] = 1
            completion[i, len(p):len(p) + len(s)] = 1
            old[i, len(p):len(p) + len(s)] = torch.tensor(lp)
        return {"ids": ids, "attention": attention, "completion": completion, "old_logp": old}

    def _reference_logprobs(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ref = self.reference if self.reference is not None else model
        gemma = backbone(ref)
        device = gemma.embed.weight.device
        off = adapters_disabled(gemma) if self.reference is None and lora_layers(gemma) else contextlib.nullcontext()
        out = []
        with off:
            for i in range(0, len(batch["ids"]), self.s.micro_batch):
                part = {k: v[i:i + self.s.micro_batch].to(device) for k, v in batch.items()}
                hidden = gemma(part["ids"], attention_mask=part["attention"], logits_at="none")
                out.append(token_logprobs(gemma, hidden, part["ids"], part["completion"],
                                          temperature=self.s.temperature)[0].cpu())
        return torch.cat(out)
