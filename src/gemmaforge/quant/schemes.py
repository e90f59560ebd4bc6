"""Weight-only quantisation schemes: pure functions from a float weight to integer codes and back.

int8: symmetric, w ≈ q * scale with q in [-127, 127]; one float32 scale per row (per channel) or
per group of `group_size` columns.
int4: asymmetric, w ≈ q * scale + zero with q in [0, 15], two codes packed per byte as GGUF's Q4
blocks do (byte j of a group: column j in the low nibble, column j + group_size/2 in the high one,
so unpacking yields contiguous halves, which compiled kernels vectorise); a float16 scale and zero
per group of `group_size` columns (default 16). The scale and zero either span the group's min..max
("minmax", GGUF's Q4_1) or minimise the weighted squared error over a grid of candidate ranges
("mse", the search of llama.cpp's make_qkx2_quants for Q4_K; the default).
A model-level scheme may give the tied embedding (also the output projection) its own scheme:
"int4" keeps it at int8 per row by default (benchmarks/results/quant_options.md says why).
An int4 scheme may also name a `mix` (`for_layer`): "q4_k_m" stores the layers llama.cpp's Q4_K_M
gives more bits in int8 per row instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import InputError
from . import DEFAULT_MIX, MIXES

DEFAULT_GROUP = {"int8": None, "int4": 16}  # int8 per channel; int4 in groups of 16 (32 misses the quality goal)
ROUNDINGS = {"int8": ("absmax",), "int4": ("mse", "minmax")}  # the first is the default
DEFAULT_EMBEDDING = {"int8": "int8", "int4": "int8"}  # the tied embedding's scheme by default
SEARCH_ROWS = 4096  # rows searched at a time by the "mse" rounding (bounded scratch memory)
_TINY = 1e-12  # floor for a scale, so an all-zero (or constant) group does not divide by zero
# the Linear layers "q4_k_m" stores in int8 in the layers `use_more_bits` picks (llama.cpp: attn_v, ffn_down)
_MORE_BITS = re.compile(r"layers\.(\d+)\.(attn\.v_proj|mlp\.down_proj)")


def use_more_bits(i: int, n: int) -> bool:
    """Whether layer `i` of `n` is one llama.cpp's Q4_K_M quantises with more bits (Q6_K instead of
    Q4_K for attn_v and ffn_down): the first eighth, the last eighth, and every third layer between,
    with C's integer division (`use_more_bits` in llama_tensor_get_type_impl, src/llama-quant.cpp of
    ggml-org/llama.cpp: `i_layer < n_layers/8 || i_layer >= 7*n_layers/8 || (i_layer - n_layers/8)%3 == 2`).
    For gemma3-270m's 18 layers: 0, 1, 4, 7, 10, 13, 15, 16, 17."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass(frozen=True)
class Scheme:
    """What `quantize` does to each weight: `name` "int8" or "int4", `group_size` columns per
    scale (None: one scale per row, int8 only), `rounding` ("absmax" for int8; "mse" or "minmax"
    for int4), `embedding`: the tied embedding's own scheme (None: the same as the layers), and
    `mix`: None (every layer in this scheme) or "q4_k_m" (int4 only; see `for_layer`). `make` takes
    "none" for None and gives int4 the "q4_k_m" mix unless told otherwise (DEFAULT_MIX)."""

    name: str
    group_size: int | None = None
    rounding: str = "absmax"
    embedding: Scheme | None = None
    mix: str | None = None

    @classmethod
    def make(cls, name: str, group_size: int | None = None, embedding: str | Scheme | None = None,
             rounding: str | None = None, mix: str | None = None) -> Scheme:
        """A checked scheme, with each unset choice at its default; `embedding` may name a scheme
        ("int8": per row, or `name` itself: the layers' scheme) or be a Scheme."""
        if name not in DEFAULT_GROUP:
            raise InputError(f"unknown quantisation scheme {name!r}; use one of: {', '.join(DEFAULT_GROUP)}")
        if mix is not None and mix not in MIXES:
            raise InputError(f"unknown int4 mix {mix!r}; use one of: {', '.join(MIXES)}")
        mix = DEFAULT_MIX[name] if mix is None else mix
        mix = None if mix == "none" else mix
        if mix is not None and name != "int4":
            raise InputError(f"the mix {mix!r} chooses which int4 layers are stored in int8; it needs "
                             f"the int4 scheme, not {name}")
        group_size = group_size if group_size is not None else DEFAULT_GROUP[name]
        if name == "int4" and group_size is None:
            raise InputError("int4 needs a group_size (e.g. 32, 64, 128); only int8 has a per-channel scale")
        if group_size is not None and (group_size < 2 or group_size % 2):
            raise InputError(f"group_size must be an even number >= 2, got {group_size}")
        rounding = rounding or ROUNDINGS[name][0]
        if rounding not in ROUNDINGS[name]:
            raise InputError(f"{name} rounding must be one of {', '.join(ROUNDINGS[name])}, got {rounding!r}")
        embedding = embedding or DEFAULT_EMBEDDING[name]
        if isinstance(embedding, str):
            embedding = None if embedding == name else cls.make(embedding, embedding=embedding, mix="none")
        return cls(name, group_size, rounding, embedding, mix)

    @property
    def for_embedding(self) -> Scheme:
        """The scheme the tied embedding table is stored in."""
        return self.embedding or self

    def for_layer(self, name: str, n_layers: int) -> Scheme:
        """The scheme of the Linear layer `name` ("layers.4.mlp.down_proj") of a model with
        `n_layers` layers: this one, except where the mix asks for more bits. "q4_k_m" is llama.cpp's
        Q4_K_M rule (`use_more_bits`) with int8 per row in place of its Q6_K: `v_proj` and
        `down_proj` of the layers it picks."""
        hit = self.mix is not None and _MORE_BITS.fullmatch(name)
        return Scheme.make("int8") if hit and use_more_bits(int(hit.group(1)), n_layers) else self

    def to_dict(self) -> dict:
        return {"scheme": self.name, "group_size": self.group_size, "rounding": self.rounding,
                "embedding": self.embedding and self.embedding.to_dict(), "mix": self.mix}

    @classmethod
    def from_dict(cls, d: dict) -> Scheme:
        """As recorded in config.json. Checkpoints saved before `rounding` and `embedding` were
        recorded used min..max int4 rounding and quantised the embedding like the layers; a missing
        or null `mix` is no mix (int4's default mix came later)."""
        name = d["scheme"]
        emb = d.get("embedding")
        rounding = d.get("rounding") or ("minmax" if name == "int4" else None)
        return cls.make(name, d.get("group_size"), embedding=cls.from_dict(emb) if emb else name,
                        rounding=rounding, mix=d.get("mix") or "none")

    def groups(self, width: int, where: str) -> int:
        """How many scales each row of a `width`-column weight gets; the group must divide the width."""
        if self.group_size is None:
            return 1
        if width % self.group_size:
            raise InputError(f"{where}: group_size {self.group_size} does not divide its width {width}; "
                             f"choose a divisor of {width}")
        return width // self.group_size

    def __str__(self) -> str:
        parts = [] if self.group_size is None else [f"group {self.group_size}"]
        if self.name == "int4":
            parts.append(f"{self.rounding} rounding")
        if self.mix is not None:
            parts.append(f"mix {self.mix}")
        if self.embedding is not None:
            parts.append(f"embedding {self.embedding}")
        return self.name + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class Packed:
    """A quantised weight [out, in]: `codes` int8 [out, in] or uint8 [out, in/2] (int4), `scales`
    [out, groups], and `zeros` [out, groups] for int4 (None for int8)."""

    codes: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None


def fit_int4(wg: torch.Tensor, steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero [...] for groups wg [..., n], found as llama.cpp's make_qkx2_quants does for
    Q4_K (rmin=-1, rdelta=0.1, nstep=20, weights w_i = rms(x) + |x_i|): starting from min..max
    (the zero at most 0), try `steps` + 1 ranges, each rounding to codes from the best zero so far
    and fitting scale and zero to those codes by weighted least squares; keep the least weighted
    squared error. Vectorised over groups; the same decisions as the C loop."""
    hi = wg.amax(-1)
    zero = wg.amin(-1).clamp(max=0)
    w = wg.pow(2).mean(-1, keepdim=True).sqrt() + wg.abs()
    sw, sx = w.sum(-1), (w * wg).sum(-1)
    scale = ((hi - zero) / 15).clamp(min=_TINY)
    q = torch.round((wg - zero[..., None]) / scale[..., None]).clamp(0, 15)
    best = (w * (q * scale[..., None] + zero[..., None] - wg).pow(2)).sum(-1)
    for i in range(steps + 1):
        iscale = (14 + 0.1 * i) / (hi - zero).clamp(min=_TINY)
        q = torch.round(iscale[..., None] * (wg - zero[..., None])).clamp(0, 15)
        wq = w * q
        sq, sq2, sxq = wq.sum(-1), (wq * q).sum(-1), (wq * wg).sum(-1)
        det = sw * sq2 - sq * sq
        ok = det > 0
        det = torch.where(ok, det, torch.ones_like(det))
        s, z = (sw * sxq - sx * sq) / det, (sq2 * sx - sq * sxq) / det
        s = torch.where(z > 0, sxq / sq2.clamp(min=_TINY), s)  # the zero is kept at most 0
        z = z.clamp(max=0)
        e = (w * (q * s[..., None] + z[..., None] - wg).pow(2)).sum(-1)
        better = ok & (e < best)
        scale, zero, best = (torch.where(better, a, b) for a, b in ((s, scale), (z, zero), (e, best)))
    return scale, zero


def quantize_weight(w: torch.Tensor, scheme: Scheme, where: str = "weight") -> Packed:
    """Quantise a float weight [out, in] row by row (exact for any slicing of rows)."""
    out, width = w.shape
    g = scheme.groups(width, where)
    wg = w.detach().float().reshape(out, g, width // g)
    if scheme.name == "int8":
        scales = (wg.abs().amax(-1) / 127).clamp(min=_TINY)
        codes = torch.round(wg / scales[..., None]).clamp(-127, 127).to(torch.int8)
        return Packed(codes.reshape(out, width), scales, None)
    if scheme.rounding == "mse":
        fits = [fit_int4(wg[i:i + SEARCH_ROWS]) for i in range(0, out, SEARCH_ROWS)]
        zeros = torch.cat([f[1] for f in fits]).half()
        scale = torch.cat([f[0] for f in fits])
    else:  # the range from the rounded zero, so the largest weight stays within reach
        zeros = wg.amin(-1).half()
        scale = (wg.amax(-1) - zeros.float()) / 15
    scales = scale.clamp(min=_TINY).half().clamp(min=torch.finfo(torch.float16).tiny)
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
