"""Modules that replace the model's float layers: the integer codes live in buffers named `weight`
(so `.weight.device` still answers), with `scales` (and `zeros` for int4) beside them."""

from __future__ import annotations

import torch
from torch import nn

from .kernels import qmatmul
from .schemes import Packed, Scheme, dequantize, quantize_weight


class QuantWeight(nn.Module):
    """A quantised [out, in] weight and its product; the base of both replacements below."""

    def __init__(self, packed: Packed, scheme: Scheme, in_features: int):
        super().__init__()
        self.scheme = scheme
        self.in_features, self.out_features = in_features, packed.codes.shape[0]
        self.register_buffer("weight", packed.codes)
        self.register_buffer("scales", packed.scales)
        if packed.zeros is not None:
            self.register_buffer("zeros", packed.zeros)

    @classmethod
    def empty(cls, scheme: Scheme, out_features: int, in_features: int, where: str,
              device: torch.device | str = "meta") -> QuantWeight:
        """Buffers of the right shapes and dtypes (on `device`), for loading a quantised checkpoint."""
        g = scheme.groups(in_features, where)
        int4 = scheme.name == "int4"
        packed = Packed(
            torch.empty(out_features, in_features // 2 if int4 else in_features,
                        dtype=torch.uint8 if int4 else torch.int8, device=device),
            torch.empty(out_features, g, dtype=torch.float16 if int4 else torch.float32, device=device),
            torch.empty(out_features, g, dtype=torch.float16, device=device) if int4 else None)
        return cls(packed, scheme, in_features)

    @classmethod
    def from_float(cls, weight: torch.Tensor, scheme: Scheme, where: str) -> QuantWeight:
        return cls(quantize_weight(weight, scheme, where), scheme, weight.shape[1])

    @property
    def packed(self) -> Packed:
        return Packed(self.weight, self.scales, getattr(self, "zeros", None))

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.packed, dtype)

    def dequantized_rows(self, start: int, stop: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows [start, stop) of the float weight, without dequantising the rest."""
        p = self.packed
        rows = slice(start, stop)
        return dequantize(Packed(p.codes[rows], p.scales[rows], None if p.zeros is None else p.zeros[rows]), dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scheme={self.scheme}"


class QuantLinear(QuantWeight):
    """y = x @ W.T with W quantised (no bias: Gemma has none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return qmatmul(x, self.packed)


class QuantEmbedding(QuantWeight):
    """The tied embedding: `forward(ids)` looks rows up (dequantising only those rows) and
    `project(hidden)` is the output projection, both reading the same quantised table."""

    def __init__(self, packed: Packed, scheme: Scheme, in_features: int, dtype: torch.dtype = torch.float32):
        super().__init__(packed, scheme, in_features)
        self.dtype = dtype  # the activations' dtype, which a lookup returns

    @property
    def embedding_dim(self) -> int:
        return self.in_features

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        p = self.packed
        rows = Packed(p.codes[flat], p.scales[flat], None if p.zeros is None else p.zeros[flat])
        return dequantize(rows, self.dtype).view(*ids.shape, self.in_features)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return qmatmul(hidden, self.packed)
