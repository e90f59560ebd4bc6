"""Quantised checkpoints in our format: the codes, scales and zeros as safetensors tensors, the
scheme under "quantization" in config.json. Loading builds the model on the meta device and assigns
the stored tensors, so no float32 weight is ever materialised."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import GemmaConfig
from ..errors import CheckpointError
from ..model import Gemma, check_dtype
from . import quantized_skeleton
from .schemes import Scheme

QUANTIZATION = "quantization"  # the config.json key that records the scheme


def load_quantized(path: Path, cfg: GemmaConfig, scheme: Scheme, dtype: torch.dtype) -> Gemma:
    from ..weights.tensors import read_safetensors

    check_dtype(dtype)
    if not path.exists():
        raise CheckpointError(f"{path}: missing (config.json records a quantised checkpoint)")
    with torch.device("meta"):
        model = quantized_skeleton(Gemma(cfg).to(dtype), scheme)
    expected = model.state_dict()
    state = read_safetensors(path)
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise CheckpointError(f"{path}: does not match its {scheme} config: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}")
    for k, want in expected.items():
        got = state[k]
        integer = not want.dtype.is_floating_point or k.endswith((".scales", ".zeros"))
        if got.shape != want.shape or (integer and got.dtype != want.dtype):
            raise CheckpointError(f"{path}: tensor {k} is {got.dtype} {tuple(got.shape)}, "
                                  f"the {scheme} config needs {want.dtype} {tuple(want.shape)}")
        if not integer:
            state[k] = got.to(dtype)
    model.load_state_dict(state, assign=True)
    return model.eval()
