"""Matrix products with quantised weights, the kernel chosen per shape.

Measured on this CPU (benchmarks/bench_quant_kernels.py): for a few rows (batch decoding) a
`torch.compile`d dequantise-and-reduce reads the integer codes once and beats float32 by the ratio
of bytes read, while PyTorch's `_weight_int8pack_mm` / `_weight_int4pack_mm_for_cpu` are slower than
float32 here. For many rows (prefill) the product is compute-bound: dequantising a block of output
rows at a time and calling the float matmul is fastest, and exact (it is the float product of the
dequantised weight). `GEMMAFORGE_QUANT_KERNEL=eager` turns the compiled kernel off.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .schemes import Packed, dequantize

DECODE_ROWS = 8  # at most this many rows go through the reduction kernel (see the benchmark)
BLOCK = 8192  # output rows dequantised at a time on the matmul path (bounded scratch memory)
RECOMPILES = 64  # weight shapes x row counts one process may meet
_compiled: dict[str, Callable] = {}
_mode = os.environ.get("GEMMAFORGE_QUANT_KERNEL", "auto")


def set_kernel(mode: str) -> None:
    """"auto" (compiled reduction for few rows on CPU, else dequantise+matmul), "eager" (always
    dequantise+matmul), or "compiled" (the reduction wherever it applies, errors not hidden)."""
    global _mode
    if mode not in ("auto", "eager", "compiled"):
        raise ValueError(f"kernel mode must be 'auto', 'eager' or 'compiled', got {mode!r}")
    _mode = mode


def reduce_int8(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x [R, K] @ dequantised(codes [N, K], scales [N, G]).T in float32, as one reduction."""
    (r, k), (n, g) = x.shape, scales.shape
    prod = x.float().view(r, 1, g, k // g) * codes.view(1, n, g, k // g).float()
    return (prod.sum(-1) * scales.float()[None]).sum(-1)


def reduce_int4(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """x [R, K] @ dequantised(packed codes [N, K/2], scales, zeros [N, G]).T in float32:
    sum_k (q s + z) x = s (sum_k q x) + z (sum_k x) per group; a byte's two nibbles meet the two
    contiguous halves of the group's x (the packing of schemes.py)."""
    (r, k), (n, g) = x.shape, scales.shape
    c = codes.view(1, n, g, k // g // 2)
    xg = x.float().view(r, 1, g, 2, k // g // 2)
    dot = (xg[:, :, :, 0] * (c & 15).float() + xg[:, :, :, 1] * (c >> 4).float()).sum(-1)
    return (dot * scales.float()[None] + xg.sum((-1, -2)) * zeros.float()[None]).sum(-1)


def _reduction(p: Packed) -> Callable:
    """The compiled reduction for `p`'s scheme. Shapes are static: code generated for symbolic
    sizes ran 2-10x slower here (bench_quant_kernels.py), and a model has only a handful of weight
    shapes, each compiled once per row count (the recompile limit is raised to allow for them)."""
    fn = reduce_int8 if p.zeros is None else reduce_int4
    if torch.compiler.is_compiling():  # inside a compiled program (a decode step): traced, fused with the rest
        return fn
    name = "int8" if p.zeros is None else "int4"
    if name not in _compiled:
        from torch._dynamo import config as cfg

        cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILES)
        _compiled[name] = torch.compile(fn, dynamic=False)
    return _compiled[name]


def matmul_blocks(x: torch.Tensor, p: Packed) -> torch.Tensor:
    """x [R, K] @ W.T by dequantising BLOCK output rows of W at a time into x's dtype."""
    n = p.codes.shape[0]
    if n <= BLOCK:
        return F.linear(x, dequantize(p, x.dtype))
    out = x.new_empty(x.shape[0], n)
    for i in range(0, n, BLOCK):
        part = Packed(p.codes[i:i + BLOCK], p.scales[i:i + BLOCK], None if p.zeros is None else p.zeros[i:i + BLOCK])
        torch.matmul(x, dequantize(part, x.dtype).t(), out=out[:, i:i + BLOCK])
    return out


def qmatmul(x: torch.Tensor, p: Packed) -> torch.Tensor:
    """x [..., K] @ W.T for the quantised W [N, K]; the kernel chosen by the number of rows."""
    global _mode
    x2 = x.reshape(-1, x.shape[-1])
    if _mode != "eager" and x2.shape[0] <= DECODE_ROWS and (x.device.type == "cpu" or _mode == "compiled"):
        fn = _reduction(p)
        args = (x2, p.codes, p.scales) if p.zeros is None else (x2, p.codes, p.scales, p.zeros)
        try:
            out = fn(*args).to(x.dtype)
        except Exception as e:  # no C++ compiler, an unsupported platform...: eager is exact too
            if _mode == "compiled":
                raise
            warnings.warn(f"quantised kernel: torch.compile failed ({type(e).__name__}: {e}); "
                          "using dequantise+matmul", stacklevel=2)
            _mode = "eager"
            out = matmul_blocks(x2, p)
    else:
        out = matmul_blocks(x2, p)
    return out.reshape(*x.shape[:-1], p.codes.shape[0])
