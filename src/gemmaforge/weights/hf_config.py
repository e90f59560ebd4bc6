"""GemmaConfig <-> Hugging Face config.json (model types gemma, gemma2, gemma3_text, gemma3)."""

from __future__ import annotations

from typing import Any

from ..config import ARCH_FAMILY, GemmaConfig
from ..errors import ConfigError

# How each family is written for transformers: (model_type, architecture class).
_HF_NAMES = {1: ("gemma", "GemmaForCausalLM"), 2: ("gemma2", "Gemma2ForCausalLM"),
             3: ("gemma3_text", "Gemma3ForCausalLM")}


def _rope(d: dict[str, Any], layer_type: str, default_theta: float) -> tuple[float, float]:
    """(theta, linear scaling factor) from either the 4.x or the 5.x way of writing RoPE."""
    params = d.get("rope_parameters") or {}
    if layer_type in params:
        params = params[layer_type]
    theta = params.get("rope_theta", d.get("rope_theta", default_theta))
    scaling = params if "rope_type" in params else (d.get("rope_scaling") or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ("default", "linear"):
        raise ConfigError(f"RoPE type {kind!r} is not supported (Gemma uses default or linear)")
    return float(theta), float(scaling.get("factor", 1.0)) if kind == "linear" else 1.0


def from_hf_config(d: dict[str, Any], where: str = "config.json") -> GemmaConfig:
    if d.get("model_type") == "gemma3" and "text_config" in d:
        d = {"model_type": "gemma3_text", **d["text_config"]}
    mt = d.get("model_type")
    family = ARCH_FAMILY.get(mt)
    if family is None:
        raise ConfigError(f"{where}: model_type {mt!r} is not a Gemma text model "
                          f"(expected one of {', '.join(ARCH_FAMILY)})")
    act = d.get("hidden_activation") or d.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_tanh", "gelu"):
        raise ConfigError(f"{where}: activation {act!r} is not Gemma's tanh GELU")
    n_layers = d["num_hidden_layers"]
    types = d.get("layer_types")
    if types is None and family == 2:
        types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
    if types is None and family == 3:
        pattern = d.get("sliding_window_pattern", d.get("_sliding_window_pattern", 6))
        types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)]
    theta, scaling = _rope(d, "full_attention", 10000.0)
    local_theta = d.get("rope_local_base_freq")
    if local_theta is None:
        local_theta = _rope(d, "sliding_attention", 10000.0)[0] if family == 3 else theta
    try:
        return GemmaConfig(
            family=family, vocab_size=d["vocab_size"], d_model=d["hidden_size"], n_layers=n_layers,
            n_heads=d["num_attention_heads"], n_kv_heads=d.get("num_key_value_heads", d["num_attention_heads"]),
            head_dim=d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"],
            ffn_dim=d["intermediate_size"], max_seq_len=d.get("max_position_embeddings", 8192),
            norm_eps=d.get("rms_norm_eps", 1e-6), rope_base=theta, rope_scaling=scaling,
            rope_local_base=float(local_theta),
            query_pre_attn_scalar=d.get("query_pre_attn_scalar") if family > 1 else None,
            post_norms=family > 1, qk_norm=family == 3,
            attn_softcap=d.get("attn_logit_softcapping") if family == 2 else None,
            final_softcap=d.get("final_logit_softcapping") if family > 1 else None,
            sliding_window=d.get("sliding_window") if family > 1 else None,
            layer_types="".join("L" if t == "sliding_attention" else "G" for t in types) if types else "",
            name=d.get("_name_or_path", ""),
        )
    except KeyError as e:
        raise ConfigError(f"{where}: missing required field {e.args[0]!r}") from None


def to_hf_config(cfg: GemmaConfig) -> dict[str, Any]:
    if cfg.family == 1 and cfg.post_norms | cfg.qk_norm | ("L" in cfg.layer_types):
        raise ConfigError("this config mixes Gemma 1 with later features; transformers has no such model")
    d: dict[str, Any] = {
        "architectures": [_HF_NAMES[cfg.family][1]], "model_type": _HF_NAMES[cfg.family][0],
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps, "tie_word_embeddings": True,
        "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
        "attention_bias": False, "attention_dropout": 0.0, "torch_dtype": "float32",
    }
    global_rope = {"rope_type": "default", "rope_theta": cfg.rope_base}
    if cfg.rope_scaling != 1.0:
        global_rope = {"rope_type": "linear", "rope_theta": cfg.rope_base, "factor": cfg.rope_scaling}
    if cfg.family == 1:
        d["rope_theta"] = cfg.rope_base
        d["rope_parameters"] = global_rope
        return d
    d.update(query_pre_attn_scalar=cfg.query_pre_attn_scalar or cfg.head_dim,
             sliding_window=cfg.sliding_window or cfg.max_seq_len,
             layer_types=["sliding_attention" if t == "L" else "full_attention" for t in cfg.layer_types],
             final_logit_softcapping=cfg.final_softcap, attn_logit_softcapping=cfg.attn_softcap)
    if cfg.family == 2:
        d["rope_parameters"] = global_rope
    else:
        d["rope_parameters"] = {"full_attention": global_rope,
                                "sliding_attention": {"rope_type": "default", "rope_theta": cfg.rope_local_base}}
    return d
