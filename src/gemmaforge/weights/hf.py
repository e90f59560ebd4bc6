"""Hugging Face-layout directories: config.json + model.safetensors (or a sharded index)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..model import Gemma
from ..tokenizer.chat_template import jinja_template
from .hf_config import from_hf_config, to_hf_config
from .hf_names import hf_names
from .tensors import atomic_dir, build_model, read_safetensors_dir

if TYPE_CHECKING:
    from ..tokenizer import Tokenizer

# transformers reads tokenizer.model with these settings; without add_bos_token it would add no <bos>.
_TOKENIZER_CONFIG = {"tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
                     "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
# The published models' special ids, for an export without a tokenizer: (pad, eos, bos, end_of_turn).
_SPECIAL_IDS = {1: (0, 1, 2, 107), 2: (0, 1, 2, 107), 3: (0, 1, 2, 106)}


def load(directory: Path, dtype: torch.dtype | None) -> Gemma:
    where = directory / "config.json"
    try:
        cfg = from_hf_config(json.loads(where.read_text()), str(where))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: malformed JSON: {e}") from None
    theirs = read_safetensors_dir(directory)
    # Multimodal Gemma 3 checkpoints nest the text model under language_model.
    theirs = {k.replace("language_model.model.", "model.").replace("model.language_model.", "model."): v
              for k, v in theirs.items() if "vision" not in k and "multi_modal" not in k}
    lm_head = theirs.pop("lm_head.weight", None)
    ours = {v: k for k, v in hf_names(cfg).items()}
    state = {ours.get(k, k): v for k, v in theirs.items()}
    if lm_head is not None and "embed.weight" in state and not torch.equal(lm_head, state["embed.weight"]):
        raise CheckpointError(f"{directory}: lm_head differs from the embedding; Gemma ties them")
    stored = state["embed.weight"].dtype if "embed.weight" in state else torch.float32
    if dtype is None and stored == torch.float16:
        dtype = torch.float32
    return build_model(cfg, state, str(directory), dtype or stored)


def export(model: Gemma, directory: str | Path, tokenizer: Tokenizer | None = None, overwrite: bool = False) -> Path:
    """Write a directory that `transformers.AutoModelForCausalLM.from_pretrained` loads, ready to
    chat: the chat template (with generation markers), `<end_of_turn>` among the stop ids of
    config.json and generation_config.json, and the weights' true dtype."""
    directory = Path(directory)
    names = hf_names(model.config)
    family = tokenizer.family if tokenizer is not None else model.config.family
    pad, eos, bos, eot = (_SPECIAL_IDS[model.config.family] if tokenizer is None else
                          (tokenizer.pad_id, tokenizer.eos_id, tokenizer.bos_id, tokenizer.end_of_turn_id))
    config = {**to_hf_config(model.config), "pad_token_id": pad, "bos_token_id": bos, "eos_token_id": [eos, eot],
              "torch_dtype": str(model.dtype).removeprefix("torch.")}
    generation = {"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad, "do_sample": False}
    with atomic_dir(directory, overwrite) as tmp:
        if tokenizer is not None:
            tokenizer.save(tmp)
            (tmp / "tokenizer_config.json").write_text(json.dumps(
                {**_TOKENIZER_CONFIG, "chat_template": jinja_template(family)}, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2))
        state = {names[k]: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return directory
