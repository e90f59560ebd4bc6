"""Quantised checkpoints in our format: the codes, scales and zeros as safetensors tensors, the
scheme under "quantization" in config.json. Loading builds the model on the meta device and assigns
the stored tensors, so no float32 weight is ever materialised."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..config import GemmaConfig
from ..errors import CheckpointError
from ..model import Gemma, check_dtype
from .api import quantized_skeleton
from .modules import QuantWeight
from .schemes import Packed, Scheme, quantize_weight

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


RowReader = Callable[[int, int], torch.Tensor]  # rows [start, stop) of one float tensor
ROWS = 16384  # rows quantised at a time: the 262144-row embedding never exists in float32 whole


def quantize_streamed(cfg: GemmaConfig, tensors: Iterable[tuple[str, tuple[int, ...], RowReader]],
                      scheme: Scheme, dtype: torch.dtype, where: str) -> Gemma:
    """A quantised model built from float tensors read a block of rows at a time (a GGUF's blocks,
    a cache file's slices): at most one block of float weights exists at once. Each tensor is
    quantised in the scheme its module of the skeleton holds."""
    check_dtype(dtype)
    with torch.device("meta"):
        model = quantized_skeleton(Gemma(cfg).to(dtype), scheme)
    expected = model.state_dict()
    schemes = {name: m.scheme for name, m in model.named_modules() if isinstance(m, QuantWeight)}
    state: dict[str, torch.Tensor] = {}
    for name, shape, read in tensors:
        if name.endswith("norm.weight"):
            state[name] = read(0, shape[0]).to(dtype)
            continue
        base = name.removesuffix(".weight")
        if base not in schemes:
            raise CheckpointError(f"{where}: unexpected tensor {name}")
        s = schemes[base]
        blocks = [quantize_weight(read(i, min(i + ROWS, shape[0])), s, base) for i in range(0, shape[0], ROWS)]
        state[name] = torch.cat([b.codes for b in blocks])
        state[f"{base}.scales"] = torch.cat([b.scales for b in blocks])
        if blocks[0].zeros is not None:
            state[f"{base}.zeros"] = torch.cat([b.zeros for b in blocks])
    for k, want in expected.items():
        if k not in state or state[k].shape != want.shape:
            got = tuple(state[k].shape) if k in state else "missing"
            raise CheckpointError(f"{where}: tensor {k} is {got}, the config needs {tuple(want.shape)}")
    model.load_state_dict(state, assign=True)
    return model.eval()


__all__ = ["QUANTIZATION", "Packed", "load_quantized", "quantize_streamed"]
