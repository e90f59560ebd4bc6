"""The Gemma decoder: one module for Gemma 1, 2 and 3, switched by `GemmaConfig`.

Numerics follow the reference implementations exactly: RMSNorm in float32 with (1 + w), tanh-GELU
GeGLU, half-split RoPE with float32 angles, the embedding scale cast to the activation dtype,
soft-caps before the mask, sliding windows that count the current token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import GemmaConfig
from .errors import ConfigError
from .kv_cache import KVCache
from .util.machine import cpu_vendor

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16)


def check_dtype(dtype: torch.dtype) -> None:
    if dtype == torch.float16:
        raise ConfigError(
            "float16 is not supported: Gemma's activations overflow float16's range (max 65504) and "
            "produce inf/NaN; use torch.bfloat16 or torch.float32")
    if dtype not in SUPPORTED_DTYPES:
        raise ConfigError(f"unsupported dtype {dtype}; use torch.float32 or torch.bfloat16")


@torch.compiler.assume_constant_result
def split_threads() -> int:
    """How many row blocks a few-row product on CPU is split into for bmm (1: none), a constant of
    a compiled program. On an AMD EPYC, MKL ran the matrix-vector product on one thread and the
    split was 3x faster; on an Intel Xeon MKL used every thread and the split was 2-4x slower."""
    return torch.get_num_threads() if cpu_vendor() == "AuthenticAMD" else 1


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight.T, for a few rows (decoding) split into a batch of row blocks where BLAS would
    run the matrix-vector product on one thread (split_threads)."""
    rows = x.numel() // x.shape[-1]
    parts = math.gcd(weight.shape[0], split_threads())
    if rows > 4 or parts == 1 or x.device.type != "cpu" or torch.is_grad_enabled():
        return F.linear(x, weight)
    out = torch.bmm(weight.view(parts, -1, weight.shape[1]), x.reshape(rows, -1).t().expand(parts, -1, -1))
    return out.permute(2, 0, 1).reshape(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """nn.Linear (same parameters, same LoRA/FSDP seams) with the fast decoding path above."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight)


class Embedding(nn.Embedding):
    """The token embedding, tied to the output projection (`project`). A quantised replacement
    (gemmaforge.quant) provides the same two methods over one integer table."""

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return linear(hidden, self.weight)


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: computed in float32, scaled by (1 + weight), cast back at the end."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float, scaling: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [B, T, head_dim] for half-split RoPE; angles in float32."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device,
                                            dtype=torch.int64).float() / head_dim))
    inv_freq = inv_freq / scaling
    angles = positions.float()[..., None] * inv_freq  # [B, T, head_dim/2]
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; rotate the two halves of each head."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def key_positions(positions: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Positions of keys, with -1 marking tokens that must never be attended (padding)."""
    return positions if key_mask is None else positions.masked_fill(~key_mask, -1)


@dataclass
class AttnInputs:
    """What attention needs for one forward pass. Masks depend only on the layer kind (local or
    global), so each is built once per forward, not once per layer."""

    positions: torch.Tensor  # [B, T] positions of the new tokens
    key_mask: torch.Tensor | None  # [B, T] False at padding
    cache: KVCache | None
    window: int | None
    causal_only: bool  # no padding, cache or custom positions: SDPA's built-in causal mask is exact
    segments: torch.Tensor | None = None  # [B, T] document ids of packed rows: no attention across them
    _memo: dict = field(default_factory=dict)

    def allowed(self, local: bool, k_pos: torch.Tensor) -> torch.Tensor:
        """[B, T, S] bool: may query t see key s (given the keys' positions, -1 = never)."""
        if ("allowed", local) not in self._memo:
            q_pos = self.positions[:, :, None]
            ok = (k_pos[:, None, :] >= 0) & (k_pos[:, None, :] <= q_pos)
            if local:
                ok &= q_pos - k_pos[:, None, :] < self.window
            if self.segments is not None:
                ok &= self.segments[:, :, None] == self.segments[:, None, :]
            self._memo["allowed", local] = ok
        return self._memo["allowed", local]

    def bias(self, local: bool, k_pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The same mask as an additive [B, 1, T, S] bias for SDPA."""
        if ("bias", local) not in self._memo:
            allowed = self.allowed(local, k_pos)
            bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
            self._memo["bias", local] = bias.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
        return self._memo["bias", local]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, scale: float,
           softcap: float | None) -> torch.Tensor:
    """Attention with grouped KV heads [B, H, T, D] x [B, KV, S, D]; softmax in float32.

    Query heads are folded into their KV group instead of repeating K and V in memory.
    """
    B, H, T, D = q.shape
    kv = k.shape[1]
    scores = (q.reshape(B, kv, H // kv * T, D) @ k.transpose(-1, -2)).view(B, kv, H // kv, T, -1) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap  # soft-cap first, then mask (as the reference)
    scores = scores.masked_fill(~allowed[:, None, None], torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return (probs.view(B, kv, H // kv * T, -1) @ v).view(B, H, T, D)


class Attention(nn.Module):
    def __init__(self, cfg: GemmaConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.local = cfg.is_local(layer)
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = Linear(cfg.d_model, cfg.n_heads * cfg.head_dim)
        self.k_proj = Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim)
        self.v_proj = Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim)
        self.o_proj = Linear(cfg.n_heads * cfg.head_dim, cfg.d_model)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], inp: AttnInputs) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        if self.cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        k_pos = key_positions(inp.positions, inp.key_mask)
        if inp.cache is not None:
            k, v, k_pos = inp.cache.update(self.layer, k, v, k_pos)
        scale = self.cfg.attn_scale
        if self.cfg.attn_softcap is not None or T == 1:  # soft-capping, or decoding: explicit matmuls
            out = attend(q, k, v, inp.allowed(self.local, k_pos), scale, self.cfg.attn_softcap)
        elif inp.causal_only and not self.local:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=inp.bias(self.local, k_pos, q.dtype),
                                                 scale=scale, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.hd))


class GeGLU(nn.Module):
    def __init__(self, cfg: GemmaConfig):
        super().__init__()
        self.gate_proj = Linear(cfg.d_model, cfg.ffn_dim)
        self.up_proj = Linear(cfg.d_model, cfg.ffn_dim)
        self.down_proj = Linear(cfg.ffn_dim, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


class Block(nn.Module):
    """One decoder layer; the unit for FSDP wrapping and activation checkpointing."""

    def __init__(self, cfg: GemmaConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = GeGLU(cfg)
        self.input_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.pre_mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.post_norms = cfg.post_norms
        if cfg.post_norms:
            self.post_attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
            self.post_mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], inp: AttnInputs) -> torch.Tensor:
        h = self.attn(self.input_norm(x), rope, inp)
        x = x + (self.post_attn_norm(h) if self.post_norms else h)
        h = self.mlp(self.pre_mlp_norm(x))
        return x + (self.post_mlp_norm(h) if self.post_norms else h)


class Gemma(nn.Module):
    """The Gemma decoder. `model(input_ids) -> logits [B, T, V]`.

    Optional inputs serve padded batches and incremental decoding:
      attention_mask [B, T] (1 = real token; left or right padding),
      positions [B, T] (default: running count of real tokens),
      cache: a KVCache from `new_cache` (keys/values are appended to it),
      segment_ids [B, T]: several documents packed in one row attend only within their own id
        (pass `positions` restarting at 0 for each, so every document runs as it would alone),
      logits_at: "all", "last" (only the last position) or "none" (return final hidden states).
    """

    def __init__(self, config: GemmaConfig):
        super().__init__()
        self.config = config
        self.embed = Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)

    # -- helpers -------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype (a norm's: weights may be quantised to integers)."""
        return self.final_norm.weight.dtype

    def to(self, *args, **kwargs):
        dtype = kwargs.get("dtype") or next((a for a in args if isinstance(a, torch.dtype)), None)
        if dtype is not None:
            check_dtype(dtype)
        return super().to(*args, **kwargs)

    def half(self):
        check_dtype(torch.float16)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch_size: int, max_len: int | None = None, spare: int = 0,
                  static: bool = False) -> KVCache:
        return KVCache.allocate(self.config, batch_size, max_len or self.config.max_seq_len,
                                dtype=self.dtype, device=self.final_norm.weight.device, spare=spare,
                                static=static)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output projection (tied to the embedding) plus Gemma 2's final soft-cap."""
        out = self.embed.project(hidden)
        cap = self.config.final_softcap
        return torch.tanh(out / cap) * cap if cap is not None else out

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids)
        # The scale is rounded to the activation dtype first, as the reference does.
        return h * torch.tensor(math.sqrt(self.config.d_model), dtype=h.dtype)

    @staticmethod
    def default_positions(attention_mask: torch.Tensor | None, shape: torch.Size, device: torch.device,
                          cache: KVCache | None) -> torch.Tensor:
        """Positions count real tokens only, so left padding does not shift them."""
        if attention_mask is None:
            pos = torch.arange(shape[1], device=device).expand(shape[0], -1)
        else:
            pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return pos + cache.next_position[:, None] if cache is not None else pos

    # -- forward -------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_at: str = "all", segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        if segment_ids is not None and cache is not None:
            raise ValueError("segment_ids (packed documents) cannot be combined with a KV cache")
        if logits_at not in ("all", "last", "none"):
            raise ValueError(f"logits_at must be 'all', 'last' or 'none', got {logits_at!r}")
        key_mask = attention_mask.bool() if attention_mask is not None else None
        causal_only = positions is None and key_mask is None and cache is None and segment_ids is None
        if positions is None:
            positions = self.default_positions(key_mask, input_ids.shape, input_ids.device, cache)
        if cache is not None:
            cache.begin(key_positions(positions, key_mask))
        return self.run(input_ids, positions, key_mask, cache, causal_only, segment_ids, logits_at)

    def run(self, input_ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor | None,
            cache: KVCache | None, causal_only: bool, segment_ids: torch.Tensor | None,
            logits_at: str) -> torch.Tensor:
        """The forward pass proper, once the inputs are checked and the cache has `begin`: no
        host-side reads of tensor values here, so `torch.compile` captures it whole (a decode step
        over a `static` cache: inference.compiled)."""
        x = self.embed_tokens(input_ids)
        cfg = self.config
        ropes = {
            "G": rope_cos_sin(positions, cfg.head_dim, cfg.rope_base, cfg.rope_scaling, x.dtype),
        }
        if "L" in cfg.layer_types:
            # Gemma 2 uses one base everywhere; Gemma 3's local layers use their own, unscaled.
            local_base = cfg.rope_local_base if cfg.family >= 3 else cfg.rope_base
            local_scale = 1.0 if cfg.family >= 3 else cfg.rope_scaling
            ropes["L"] = rope_cos_sin(positions, cfg.head_dim, local_base, local_scale, x.dtype)
        inp = AttnInputs(positions, key_mask, cache, cfg.sliding_window, causal_only, segment_ids)
        for i, block in enumerate(self.layers):
            x = block(x, ropes[cfg.layer_types[i]], inp)
        if logits_at == "last":
            x = x[:, -1:]
        x = self.final_norm(x)
        return x if logits_at == "none" else self.logits(x)
