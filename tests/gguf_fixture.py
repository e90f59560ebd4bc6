"""Writes small GGUF files the way llama.cpp's converter does (norms stored as 1 + w)."""

from __future__ import annotations

from pathlib import Path

from gguf import GGMLQuantizationType, GGUFWriter, RopeScalingType
from gguf.quants import quantize

from gemmaforge.model import Gemma

ARCH = {1: "gemma", 2: "gemma2", 3: "gemma3"}
GGUF_NAMES = {
    "attn.q_proj": "attn_q", "attn.k_proj": "attn_k", "attn.v_proj": "attn_v", "attn.o_proj": "attn_output",
    "attn.q_norm": "attn_q_norm", "attn.k_norm": "attn_k_norm", "input_norm": "attn_norm",
    "pre_mlp_norm": "ffn_norm", "post_attn_norm": "post_attention_norm", "post_mlp_norm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def gguf_name(ours: str) -> str:
    if ours == "embed.weight":
        return "token_embd.weight"
    if ours == "final_norm.weight":
        return "output_norm.weight"
    _, i, *rest = ours.split(".")
    return f"blk.{i}.{GGUF_NAMES['.'.join(rest[:-1])]}.weight"


def write_gguf(model: Gemma, path: Path, quant: GGMLQuantizationType | None = None,
               arch: str | None = None) -> Path:
    cfg = model.config
    arch = arch or ARCH[cfg.family]
    w = GGUFWriter(str(path), arch)
    w.add_context_length(cfg.max_seq_len)
    w.add_embedding_length(cfg.d_model)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_freq_base(cfg.rope_base)
    if cfg.family >= 2:
        w.add_sliding_window(cfg.sliding_window)
    if cfg.rope_scaling != 1.0:  # as llama.cpp's converter writes Gemma 3 4B+
        w.add_rope_scaling_type(RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg.rope_scaling)
    if cfg.family == 2:
        w.add_float32(f"{arch}.attn_logit_softcapping", cfg.attn_softcap)
        w.add_float32(f"{arch}.final_logit_softcapping", cfg.final_softcap)
    for name, t in model.state_dict().items():
        arr = t.float().numpy()
        if name.endswith("norm.weight"):
            w.add_tensor(gguf_name(name), arr + 1.0)
        elif quant is not None and arr.ndim == 2:
            w.add_tensor(gguf_name(name), quantize(arr, quant), raw_dtype=quant)
        else:
            w.add_tensor(gguf_name(name), arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
