"""Tiny random Gemmas of each family and their transformers twins, shared by the model tests."""

from __future__ import annotations

import pytest
import torch

import gemmaforge as gf
from gemmaforge.model import Gemma

TINY = ["tiny-gemma-mqa", "tiny-gemma-mha", "tiny-gemma2", "tiny-gemma3"]


def random_gemma(name: str, seed: int = 0, std: float = 0.3) -> Gemma:
    """A tiny Gemma with large random weights (norm weights too), so every term matters."""
    torch.manual_seed(seed)
    model = Gemma(gf.GemmaConfig.preset(name))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model.eval()


def hf_twin(model: Gemma):
    """The transformers model with the same weights (the oracle)."""
    transformers = pytest.importorskip("transformers")
    from gemmaforge.weights.hf_config import to_hf_config
    from gemmaforge.weights.hf_names import hf_names

    cfg = transformers.AutoConfig.for_model(**to_hf_config(model.config))
    hf = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    names = hf_names(model.config)
    missing, unexpected = hf.load_state_dict({names[k]: v for k, v in model.state_dict().items()},
                                             strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected
    return hf.eval()

