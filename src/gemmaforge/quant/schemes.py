"""Weight-only quantisation schemes: pure functions from a float weight to integer codes and back.

int8: symmetric, w ≈ q * scale with q in [-127, 127]; one float32 scale per row (per channel) or
per group of `group_size` columns.
int4: asymmetric, w ≈ q * scale + zero with q in [0, 15], two codes packed per byte as GGUF's Q4
blocks do (byte j of a group: column j in the low nibble, column j + group_size/2 in the high one,
so unpacking yields contiguous halves, which compiled kernels vectorise); a float16 scale and zero
per group of `group_size` columns (default 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError

DEFAULT_GROUP = {"int8": None, "int4": 32}  # int8 per channel; int4 in groups of 32 (as GGUF's Q4 blocks)
_TINY = 1e-12  # floor for a scale, so an all-zero (or constant) group does not divide by zero


@dataclass(frozen=True)
class Scheme:
    """What `quantize` does to each weight: `name` "int8" or "int4", `group_size` columns per
    scale (None: one scale per row, int8 only)."""

    name: str
    group_size: int | None = None

    @classmethod
    def make(cls, name: str, group_size: int | None = None) -> Scheme:
        if name not in DEFAULT_GROUP:
            raise InputError(f"unknown quantisation scheme {name!r}; use one of: {', '.join(DEFAULT_GROUP)}")
        group_size = group_size if group_size is not None else DEFAULT_GROUP[name]
        if name == "int4" and group_size is None:
            raise InputError("int4 needs a group_size (e.g. 32, 64, 128); only int8 has a per-channel scale")
        if group_size is not None and (group_size < 2 or group_size % 2):
            raise InputError(f"group_size must be an even number >= 2, got {group_size}")
        return cls(name, group_size)

    def to_dict(self) -> dict:
        return {"scheme": self.name, "group_size": self.group_size}

    @classmethod
    def from_dict(cls, d: dict) -> Scheme:
        return cls.make(d["scheme"], d.get("group_size"))

    def groups(self, width: int, where: str) -> int:
        """How many scales each row of a `width`-column weight gets; the group must divide the width."""
        if self.group_size is None:
            return 1
        if width % self.group_size:
            raise InputError(f"{where}: group_size {self.group_size} does not divide its width {width}; "
                             f"choose a divisor of {width}")
        return width // self.group_size

    def __str__(self) -> str:
        return self.name if self.group_size is None else f"{self.name} (group {self.group_size})"


@dataclass
class Packed:
    """A quantised weight [out, in]: `codes` int8 [out, in] or uint8 [out, in/2] (int4), `scales`
    [out, groups], and `zeros` [out, groups] for int4 (None for int8)."""

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None


def quantize_weight(w: torch.Tensor, scheme: Scheme, where: str = "weight") -> Packed:
    """Quantise a float weight [out, in] row by row (exact for any slicing of rows)."""
    out, width = w.shape
    g = scheme.groups(width, where)
    wg = w.detach().float().reshape(out, g, width // g)
    if scheme.name == "int8":
        scales = (wg.abs().amax(-1) / 127).clamp(min=_TINY)
        codes = torch.round(wg / scales[..., None]).clamp(-127, 127).to(torch.int8)
        return Packed(codes.reshape(out, width), scales, None)
    lo, hi = wg.amin(-1), wg.amax(-1)
    zeros = lo.half()
    scales = ((hi - zeros.float()) / 15).clamp(min=_TINY).half().clamp(min=torch.finfo(torch.float16).tiny)
    q = torch.round((wg - zeros.float()[..., None]) / scales.float()[..., None]).clamp(0, 15).to(torch.uint8)
    q = q.reshape(out, g, 2, width // g // 2)
    return Packed((q[:, :, 0] | (q[:, :, 1] << 4)).reshape(out, width // 2), scales, zeros)


def unpack_int4(codes: torch.Tensor, groups: int) -> torch.Tensor:
    """uint8 [out, in/2] in `groups` groups -> uint8 codes [out, in] in 0..15."""
    c = codes.reshape(codes.shape[0], groups, -1)
    return torch.cat((c & 15, c >> 4), dim=-1).reshape(codes.shape[0], -1)


def dequantize(p: Packed, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The float weight [out, in] that `p` stands for (computed in float32, cast to `dtype`)."""
    if p.zeros is None:
        out, width = p.codes.shape
        q = p.codes.float().reshape(out, p.scales.shape[1], -1)
        return (q * p.scales.float()[..., None]).reshape(out, width).to(dtype)
    q = unpack_int4(p.codes, p.scales.shape[1])
    out, width = q.shape
    q = q.float().reshape(out, p.scales.shape[1], -1)
    return (q * p.scales.float()[..., None] + p.zeros.float()[..., None]).reshape(out, width).to(dtype)
