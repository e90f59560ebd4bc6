"""Features of a prompt–response pair: mean-pooled hidden states of a Gemma model.

A pair is rendered as one chat exchange and run once through the first `layer` blocks of the model
(the rest is never computed). Two means are read at that layer: over the user turn, and over the
model turn (its `<start_of_turn>model\n` header plus the response). The model turn's states have
seen the prompt, so the second half says what the response does *with* the request — a refusal and
a compliance to the same request differ there. An empty response leaves only the header, so the
pair then scores the prompt alone.

Because attention is causal and batches are right-padded, the prompt and header states are the
same whatever follows them: `segment_sums` returns per-segment sums so a training script reads the
prompt-alone feature of every pair from the same forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

#: Segments of a rendered pair, in order: user turn, model-turn header, response.
PROMPT, HEADER, RESPONSE = 0, 1, 2


@dataclass(frozen=True)
class FeatureSpec:
    """How a pair becomes a vector: which block's output, and how many tokens of each side."""

    layer: int = 6  # output of block `layer` (1-based, of gemma3-270m's 18): deeper ones are not run
    prompt_tokens: int = 48  # the prompt's first tokens (jailbreak templates are long)
    response_tokens: int = 48  # the response's first tokens: compliance shows early

    def to_dict(self) -> dict:
        return asdict(self)


def render(tok, prompt: str, response: str, spec: FeatureSpec) -> tuple[list[int], int, int]:
    """Token ids of the exchange, and where the header and the response start."""
    user = tok.encode("user\n", add_bos=False) + tok.encode(prompt, add_bos=False)[: spec.prompt_tokens]
    ids = [tok.bos_id, tok.start_of_turn_id, *user, tok.end_of_turn_id, *tok.encode("\n", add_bos=False)]
    header = len(ids)
    ids += [tok.start_of_turn_id, *tok.encode("model\n", add_bos=False)]
    start = len(ids)
    reply = tok.encode(response, add_bos=False)[: spec.response_tokens] if response else []
    if reply:
        ids += [*reply, tok.end_of_turn_id]
    return ids, header, start


class _Stop(Exception):
    """Raised by the hook on the last block needed: the deeper blocks are skipped."""


@torch.inference_mode()
def segment_sums(model, tok, pairs: Sequence[tuple[str, str]], spec: FeatureSpec, layers: Sequence[int] = (),
                 batch_size: int = 16, progress: bool = False) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Per-pair sums of hidden states over each segment, at each of `layers` (default: spec.layer).

    Returns ({layer: float32 [N, 3, d_model]}, counts [N, 3]); segments are PROMPT, HEADER, RESPONSE.
    """
    layers = sorted(set(layers or [spec.layer]))
    if not 1 <= layers[0] <= layers[-1] <= len(model.layers):
        raise ValueError(f"layers {layers} outside 1..{len(model.layers)}")
    rendered = [render(tok, p, r, spec) for p, r in pairs]
    order = sorted(range(len(pairs)), key=lambda i: len(rendered[i][0]))  # little padding per batch
    d = model.config.d_model
    sums = {layer: torch.zeros(len(pairs), 3, d) for layer in layers}
    counts = torch.zeros(len(pairs), 3)
    captured: dict[int, torch.Tensor] = {}

    def hook(layer: int):
        def fn(_module, _inputs, output):
            captured[layer] = output
            if layer == layers[-1]:
                raise _Stop
        return fn

    handles = [model.layers[layer - 1].register_forward_hook(hook(layer)) for layer in layers]
    device = model.embed.weight.device
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc="safety features", unit="batch")
    try:
        for start in batches:
            idx = order[start:start + batch_size]
            width = max(len(rendered[i][0]) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_id, dtype=torch.long)
            masks = torch.zeros(len(idx), 3, width)
            for row, i in enumerate(idx):
                seq, header, reply = rendered[i]
                ids[row, :len(seq)] = torch.tensor(seq)
                masks[row, PROMPT, :header] = 1
                masks[row, HEADER, header:reply] = 1
                masks[row, RESPONSE, reply:len(seq)] = 1
            try:  # right padding and no mask: causal attention keeps pads out of every real token
                model(ids.to(device), logits_at="none")
            except _Stop:
                pass
            counts[idx] = masks.sum(-1)
            for layer in layers:
                sums[layer][idx] = torch.einsum("bst,btd->bsd", masks.to(device), captured[layer].float()).cpu()
    finally:
        for h in handles:
            h.remove()
    return sums, counts


def pair_features(sums: torch.Tensor, counts: torch.Tensor, prompt_only: bool = False) -> torch.Tensor:
    """[N, 2 * d_model]: the user turn's mean and the model turn's mean (header only if `prompt_only`)."""
    user = sums[:, PROMPT] / counts[:, PROMPT, None]
    if prompt_only:
        model_turn = sums[:, HEADER] / counts[:, HEADER, None]
    else:
        model_turn = (sums[:, HEADER] + sums[:, RESPONSE]) / (counts[:, HEADER] + counts[:, RESPONSE])[:, None]
    return torch.cat([user, model_turn], dim=-1)
