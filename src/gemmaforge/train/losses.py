"""Cross-entropy over a tied output projection that never materialises full float32 logits.

With a 256k vocabulary, [tokens, vocab] float32 logits (plus their softmax and gradient) dwarf
everything else a small model holds. `chunked_cross_entropy` walks the tokens in chunks, and each
chunk's logits live only while that chunk's loss *and gradients* are computed (the approach of
Liger's fused linear cross-entropy). Backward then only scales the stored gradients by the
incoming scalar: nothing is recomputed, so it costs the same three matmuls as full logits, while
peak memory grows with the chunk instead of the sequence.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 1 << 25  # floats in one chunk's logits (128 MB): 128 tokens at a 256k vocab


def _matmul_dtype(t: torch.Tensor) -> torch.dtype:
    """The autocast dtype where autocast is on (bf16 on GPU), else the tensor's own."""
    device = t.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else t.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                softcap: float | None, chunk_size: int) -> torch.Tensor:
        dtype = _matmul_dtype(hidden)
        acc = torch.promote_types(dtype, torch.float32)  # softmax and sums: float32 at least
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype)
            valid = targets != IGNORE_INDEX
            count = valid.sum().clamp(min=1).to(acc)
            total = torch.zeros((), dtype=acc, device=hidden.device)
            grad_h = torch.empty_like(hidden) if want_h else None
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if want_w else None
            rows = torch.arange(min(chunk_size, hidden.shape[0]), device=hidden.device)
            for s in range(0, hidden.shape[0], chunk_size):
                h, t = hidden[s:s + chunk_size].to(dtype), targets[s:s + chunk_size].clamp(min=0)
                scale = valid[s:s + chunk_size].to(acc) / count  # each row's weight in the mean; 0 if ignored
                z = (h @ w.t()).to(acc)
                if softcap is not None:
                    capped = torch.tanh(z / softcap)
                    z = capped * softcap
                logp = torch.log_softmax(z, dim=-1)
                del z
                total -= (logp.gather(1, t[:, None]).squeeze(1) * scale).sum()
                if not (want_h or want_w):
                    continue
                # d loss / dz = (softmax(z) - onehot(target)) * scale; the scale is applied to the
                # [chunk, d] operands of the matmuls rather than to the [chunk, vocab] gradient.
                dz = logp.exp_()
                dz[rows[:len(t)], t] -= 1.0
                if softcap is not None:  # d cap(x)/dx = 1 - tanh(x/cap)^2
                    dz *= capped.square_().neg_().add_(1.0)
                dz = dz.to(dtype)
                if want_h:
                    grad_h[s:s + chunk_size] = (dz @ w) * scale[:, None]
                if want_w:
                    _accumulate(grad_w, dz.t(), (h * scale[:, None]).to(dtype))
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None,
                (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None,
                None, None, None)


def _accumulate(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b in acc's (float32) precision, without a temporary of acc's size in float32."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    else:
        acc += a @ b


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          softcap: float | None = None, chunk_size: int | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy of `softcap(hidden @ weight.T)` against `targets`.

    hidden [..., d], weight [V, d] (the tied embedding), targets [...] with IGNORE_INDEX (-100)
    for positions that do not count. Equals `F.cross_entropy(model.logits(hidden), targets)`.
    """
    h = hidden.reshape(-1, hidden.shape[-1])
    chunk = chunk_size or max(16, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(h, weight, targets.reshape(-1), softcap, chunk)
