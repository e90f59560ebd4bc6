"""Mixture weights per source kind: choose which documents (possibly repeated) fill the token budget.

Weights are token shares. Without an explicit total, the total is the largest one no kind has to
repeat documents for; with one, kinds short of their share repeat whole shuffled epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class KindMix:
    """What the mixture did to one kind, for the manifest."""

    weight: float
    available_tokens: int
    target_tokens: int
    selected_tokens: int = 0
    selected_documents: int = 0

    @property
    def epochs(self) -> float:
        return self.selected_tokens / self.available_tokens if self.available_tokens else 0.0


def mix(kinds: list[str], tokens: list[int], weights: dict[str, float], total: int | None,
        seed: int) -> tuple[list[int], dict[str, KindMix]]:
    """Document indices to write, in final (shuffled) order, and per-kind statistics.

    `kinds[i]` and `tokens[i]` describe document i. Empty `weights` keeps every document once.
    """
    by_kind: dict[str, list[int]] = {}
    for i, k in enumerate(kinds):
        by_kind.setdefault(k, []).append(i)
    avail = {k: sum(tokens[i] for i in idx) for k, idx in by_kind.items()}
    if not weights:
        weights = {k: avail[k] for k in by_kind}
        total = sum(avail.values())
    norm = sum(weights.values())
    share = {k: weights.get(k, 0.0) / norm for k in by_kind}
    if total is None:
        total = int(min(avail[k] / s for k, s in share.items() if s > 0))
    stats = {k: KindMix(share[k], avail[k], round(share[k] * total)) for k in sorted(by_kind)}

    chosen: list[int] = []
    for ki, k in enumerate(sorted(by_kind)):
        st, idx = stats[k], by_kind[k]
        epoch = 0
        while st.selected_tokens < st.target_tokens and avail[k] > 0:
            for j in np.random.default_rng([seed, ki, epoch]).permutation(len(idx)):
                if st.selected_tokens >= st.target_tokens:
                    break
                chosen.append(idx[j])
                st.selected_tokens += tokens[idx[j]]
                st.selected_documents += 1
            epoch += 1
    order = np.random.default_rng([seed, len(stats)]).permutation(len(chosen))
    return [chosen[j] for j in order], stats
