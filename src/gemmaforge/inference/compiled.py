"""A decode step captured whole by `torch.compile`: one generated kernel program per step instead of
hundreds of eager op calls from Python, which at batch 1 cost more than the arithmetic (see
benchmarks/bench_decode.py for the per-token Python time, with and without).

What makes the step capturable: a `static` KV cache (its attention spans every slot, empty ones
masked, so shapes never change from step to step), the host-side bookkeeping (`KVCache.begin`)
done outside the compiled region, and `Gemma.run`, which reads no tensor values on the host.
Shapes are static: one compilation per (model, batch size, cache length), so cache lengths are
rounded up to `BUCKET` to let generations of similar lengths share one. Compiling the 270M model takes
tens of seconds the first time (inductor's cache on disk shortens later runs): worth it for
long or repeated generations, not for one short reply.

Modes on CPU: the default inductor mode works; "reduce-overhead" (CUDA graphs) is CUDA-only.
Without a working C++ compiler the step falls back to the eager forward, with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from ..kv_cache import KVCache
from ..model import Gemma

BUCKET = 256  # cache lengths are rounded up to a multiple of this
RECOMPILES = 32  # distinct (batch, cache length) shapes one process may compile for
_compiled: Callable | None = None
_broken: str | None = None  # why compiling failed, once it has


def static_length(need: int, context: int) -> int:
    """The cache length to allocate for `need` positions: rounded up so shapes repeat."""
    return min(-(-need // BUCKET) * BUCKET, max(context, need))


def _step(model: Gemma, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
    return model.run(ids, positions, None, cache, False, None, "all")


def _program() -> Callable:
    global _compiled
    if _compiled is None:
        import torch._dynamo

        cfg = torch._dynamo.config
        cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILES)
        _compiled = torch.compile(_step, dynamic=False, fullgraph=True)
    return _compiled


def compiled_decode(model: Gemma, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits [B, 1, V] for the next token `ids` [B, 1] of every row, stored into `cache` (static)."""
    global _broken
    if not cache.static:
        raise ValueError("a compiled decode step needs a static KV cache (model.new_cache(..., static=True))")
    positions = cache.next_position[:, None]
    cache.begin(positions)
    if _broken is None:
        try:
            return _program()(model, ids, positions, cache)
        except Exception as e:  # no C++ compiler, an unsupported platform...: eager is exact too
            _broken = f"{type(e).__name__}: {e}"
            warnings.warn(f"compiled decoding: torch.compile failed ({_broken}); decoding eagerly", stacklevel=2)
    return _step(model, ids, positions, cache)
