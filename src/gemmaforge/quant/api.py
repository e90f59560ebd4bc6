"""`quantize(model, scheme)`: swap a model's float layers for quantised ones, and the checks around it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import InputError
from ..model import Embedding, Gemma
from .modules import QuantEmbedding, QuantLinear, QuantWeight
from .schemes import Scheme


def scheme_of(model: Gemma) -> Scheme | None:
    """The scheme `model` is quantised with, or None for a float model. The layers hold the
    model's scheme, except those a mix stores in int8 (a mixed layer's scheme names the mix, and
    every mix keeps some layers int4); the embedding holds its own (`scheme.for_embedding`)."""
    quantised = [m for m in model.modules() if isinstance(m, QuantWeight)]
    layers = [m.scheme for m in quantised if isinstance(m, QuantLinear)]
    return next((s for s in layers if s.mix is not None), layers[0] if layers else
                quantised[0].scheme if quantised else None)


def layer_schemes(model: Gemma, scheme: Scheme) -> list[tuple[str, nn.Module, Scheme]]:
    """Every float layer quantisation replaces, with the scheme it is stored in under `scheme`:
    the tied embedding its own (`for_embedding`), each Linear the mix's choice (`for_layer`). The
    one place that decides, for quantising, loading and streaming alike."""
    n = model.config.n_layers
    return [(name, m, scheme.for_embedding if isinstance(m, Embedding) else scheme.for_layer(name, n))
            for name, m in model.named_modules() if isinstance(m, (nn.Linear, Embedding))]


Make = Callable[[nn.Module, Scheme, str], QuantWeight]  # (float layer, its scheme, its name) -> replacement


def _swap(model: Gemma, scheme: Scheme, make: Make) -> None:
    """Check every target first (a bad group size leaves the model untouched), then replace them."""
    targets = layer_schemes(model, scheme)
    for name, m, s in targets:
        s.groups(m.weight.shape[1], name)
    new = [(name, make(m, s, name)) for name, m, s in targets]
    for name, module in new:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, module)


def quantize(model: Gemma, scheme: str | Scheme = "int8", group_size: int | None = None,
             embedding: str | None = None, mix: str | None = None) -> Gemma:
    """Quantise `model` in place (and return it): int8 (per channel, or per `group_size` columns)
    or int4 (asymmetric, error-minimising scales in groups of `group_size`, default 16, two codes
    per byte). `embedding` is the tied embedding's scheme, "int8" (per row) by default for both
    schemes, or "int4" (the layers' int4): an int4 table costs more quality than all the int4
    layers together (docs/quantize.md). int4's default `mix="q4_k_m"` stores `v_proj` and
    `down_proj` of the layers llama.cpp's Q4_K_M gives more bits in int8 per row (`Scheme.for_layer`);
    `mix="none"` keeps every layer int4."""
    s = scheme if isinstance(scheme, Scheme) else Scheme.make(scheme, group_size, embedding, mix=mix)
    if (already := scheme_of(model)) is not None:
        raise InputError(f"the model is already quantised ({already}); load the float model again to "
                         f"quantise it as {s}")
    dtype = model.dtype

    def make(m: nn.Module, s: Scheme, name: str) -> QuantWeight:
        if isinstance(m, Embedding):
            q = QuantEmbedding.from_float(m.weight, s, name)
            q.dtype = dtype
            return q
        return QuantLinear.from_float(m.weight, s, name)

    with torch.no_grad():
        _swap(model, s, make)
    return model


def quantized_skeleton(model: Gemma, scheme: Scheme) -> Gemma:
    """Replace `model`'s float layers by empty quantised ones on the meta device, ready for
    `load_state_dict(..., assign=True)`: loading a quantised checkpoint never builds float weights."""
    dtype = model.dtype

    def make(m: nn.Module, s: Scheme, name: str) -> QuantWeight:
        out, width = m.weight.shape
        if isinstance(m, Embedding):
            q = QuantEmbedding.empty(s, out, width, name)
            q.dtype = dtype
            return q
        return QuantLinear.empty(s, out, width, name)

    _swap(model, scheme, make)
    return model


def check_requested(have: Scheme | None, scheme: str | None, group_size: int | None, mix: str | None,
                    where: str) -> None:
    """A checkpoint stored quantised loads only with its own scheme (or no request)."""
    if have is None or (scheme is None and group_size is None and mix is None):
        return
    name = scheme or have.name
    if name == have.name and group_size is None and mix is None:  # asking for the stored scheme by name alone
        return
    want = Scheme.make(name, group_size, mix=mix)
    same_mix = mix is None or want.mix == have.mix  # a request without a mix takes the stored one
    if (want.name, want.group_size) != (have.name, have.group_size) or not same_mix:
        raise InputError(f"{where}: is stored quantised as {have}; it cannot be loaded as {want} "
                         f"(load the float model to quantise it differently, or drop quantize=)")
