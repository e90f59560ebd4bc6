"""Parameter names: gemmaforge <-> Hugging Face `transformers` Gemma/Gemma2/Gemma3 layout."""

from __future__ import annotations

from ..config import GemmaConfig

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def hf_names(cfg: GemmaConfig) -> dict[str, str]:
    """Our parameter name -> HF name, for every parameter of `Gemma(cfg)`."""
    names = {"embed.weight": "model.embed_tokens.weight", "final_norm.weight": "model.norm.weight"}
    # Gemma 1 calls its pre-MLP norm "post_attention_layernorm"; Gemma 2/3 use that name for
    # the real post-attention norm and add pre/post_feedforward_layernorm.
    norms = ({"input_norm": "input_layernorm", "post_attn_norm": "post_attention_layernorm",
              "pre_mlp_norm": "pre_feedforward_layernorm", "post_mlp_norm": "post_feedforward_layernorm"}
             if cfg.post_norms else
             {"input_norm": "input_layernorm", "pre_mlp_norm": "post_attention_layernorm"})
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        for p in _ATTN:
            names[f"{ours}attn.{p}.weight"] = f"{theirs}self_attn.{p}.weight"
        if cfg.qk_norm:
            for p in ("q_norm", "k_norm"):
                names[f"{ours}attn.{p}.weight"] = f"{theirs}self_attn.{p}.weight"
        for p in _MLP:
            names[f"{ours}mlp.{p}.weight"] = f"{theirs}mlp.{p}.weight"
        for a, b in norms.items():
            names[f"{ours}{a}.weight"] = f"{theirs}{b}.weight"
    return names
