"""The official gemma_pytorch `.ckpt` format: fused qkv, `embedder.weight`, no config inside."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from ..config import PRESETS, GemmaConfig
from ..errors import CheckpointError
from ..model import Gemma
from .tensors import build_model

# Buffers gemma_pytorch stores that are derived, not learned.
_DERIVED = ("freqs_cis", "local_freqs_cis", "global_freqs_cis")
_NORMS = {  # gemma_pytorch norm name -> ours, by whether the family has post-norms
    False: {"input_layernorm": "input_norm", "post_attention_layernorm": "pre_mlp_norm"},
    True: {"input_layernorm": "input_norm", "post_attention_layernorm": "post_attn_norm",
           "pre_feedforward_layernorm": "pre_mlp_norm", "post_feedforward_layernorm": "post_mlp_norm"},
}


def infer_config(state: dict[str, torch.Tensor], where: str) -> GemmaConfig:
    """The published preset whose family and tensor shapes match the checkpoint."""
    family = 3 if any("query_norm" in k for k in state) else 2 if any(
        "pre_feedforward_layernorm" in k for k in state) else 1
    vocab, d_model = state["embedder.weight"].shape
    n_layers = len({k.split(".")[2] for k in state if k.startswith("model.layers.")})
    qkv_rows = state["model.layers.0.self_attn.qkv_proj.weight"].shape[0]
    ffn = state["model.layers.0.mlp.gate_proj.weight"].shape[0]
    for cfg in PRESETS.values():
        if ((cfg.family, cfg.d_model, cfg.n_layers, cfg.ffn_dim) == (family, d_model, n_layers, ffn)
                and (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim == qkv_rows):
            return cfg.replace(vocab_size=vocab)
    raise CheckpointError(f"{where}: no Gemma {family} preset has d_model {d_model}, {n_layers} layers "
                          f"and these attention/MLP shapes; pass config= explicitly")


def to_ours(state: dict[str, torch.Tensor], cfg: GemmaConfig) -> dict[str, torch.Tensor]:
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    out = {"embed.weight": state["embedder.weight"], "final_norm.weight": state["model.norm.weight"]}
    for k, v in state.items():
        if not k.startswith("model.layers.") or k.rsplit(".", 1)[-1] in _DERIVED:
            continue
        _, _, i, *rest = k.split(".")
        name = ".".join(rest)
        base = f"layers.{i}."
        if name == "self_attn.qkv_proj.weight":
            out[base + "attn.q_proj.weight"], out[base + "attn.k_proj.weight"], out[
                base + "attn.v_proj.weight"] = torch.split(v, [q, kv, kv])
        elif name.startswith("self_attn."):
            name = name.replace("query_norm", "q_norm").replace("key_norm", "k_norm")
            out[base + name.replace("self_attn.", "attn.")] = v
        elif name.startswith("mlp."):
            out[base + name] = v
        else:
            norm = name.removesuffix(".weight")
            out[base + _NORMS[cfg.post_norms].get(norm, norm) + ".weight"] = v
    return out


def from_ours(model: Gemma) -> dict[str, torch.Tensor]:
    """Our state dict in gemma_pytorch's names (fused qkv)."""
    cfg, sd = model.config, model.state_dict()
    norms = {ours: theirs for theirs, ours in _NORMS[cfg.post_norms].items()}
    out = {"embedder.weight": sd["embed.weight"], "model.norm.weight": sd["final_norm.weight"]}
    for i in range(cfg.n_layers):
        b, t = f"layers.{i}.", f"model.layers.{i}."
        out[t + "self_attn.qkv_proj.weight"] = torch.cat([sd[b + f"attn.{p}_proj.weight"] for p in "qkv"])
        out[t + "self_attn.o_proj.weight"] = sd[b + "attn.o_proj.weight"]
        if cfg.qk_norm:
            out[t + "self_attn.query_norm.weight"] = sd[b + "attn.q_norm.weight"]
            out[t + "self_attn.key_norm.weight"] = sd[b + "attn.k_norm.weight"]
        for p in ("gate_proj", "up_proj", "down_proj"):
            out[t + f"mlp.{p}.weight"] = sd[b + f"mlp.{p}.weight"]
        for ours, theirs in norms.items():
            out[t + f"{theirs}.weight"] = sd[b + f"{ours}.weight"]
    return out


def load(path: Path, dtype: torch.dtype | None, config: GemmaConfig | None = None) -> Gemma:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
    state = raw.get("model_state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or "embedder.weight" not in state:
        raise CheckpointError(f"{path}: not a gemma_pytorch checkpoint (no embedder.weight)")
    try:
        cfg = config or infer_config(state, str(path))
        ours = to_ours(state, cfg)
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: tensors do not fit a Gemma layout: {type(e).__name__}: {e}") from None
    return build_model(cfg, ours, str(path), dtype or torch.float32)
