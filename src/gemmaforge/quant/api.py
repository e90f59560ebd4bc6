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
    """The scheme `model` is quantised with, or None for a float model (the layers hold the
    model's scheme, the embedding its own: `scheme.for_embedding`)."""
    quantised = [m for m in model.modules() if isinstance(m, QuantWeight)]
    return next((m.scheme for m in quantised if isinstance(m, QuantLinear)),
                quantised[0].scheme if quantised else None)


def _targets(model: Gemma) -> list[tuple[str, nn.Module]]:
    """Every float layer quantisation replaces: the Linear layers and the tied embedding."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, Embedding))]


def _swap(model: Gemma, make: Callable[[str, nn.Module], QuantWeight]) -> None:
    """Check every target first (a bad group size leaves the model untouched), then replace them."""
    targets = _targets(model)
    new = [(name, make(name, m)) for name, m in targets]
    for name, module in new:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, module)


def _check_fits(model: Gemma, scheme: Scheme) -> None:
    for name, m in _targets(model):
        (scheme.for_embedding if isinstance(m, Embedding) else scheme).groups(m.weight.shape[1], name)


def quantize(model: Gemma, scheme: str | Scheme = "int8", group_size: int | None = None,
             embedding: str | None = None) -> Gemma:
    """Quantise `model` in place (and return it): int8 (per channel, or per `group_size` columns)
    or int4 (asymmetric, error-minimising scales in groups of `group_size`, default 16, two codes
    per byte). `embedding` is the tied embedding's scheme, "int8" (per row) by default for both
    schemes, or "int4" (the layers' int4): an int4 table costs more quality than all the int4
    layers together (docs/quantize.md)."""
    s = scheme if isinstance(scheme, Scheme) else Scheme.make(scheme, group_size, embedding)
    if (already := scheme_of(model)) is not None:
        raise InputError(f"the model is already quantised ({already}); load the float model again to "
                         f"quantise it as {s}")
    _check_fits(model, s)
    dtype = model.dtype

    def make(name: str, m: nn.Module) -> QuantWeight:
        if isinstance(m, Embedding):
            q = QuantEmbedding.from_float(m.weight, s.for_embedding, name)
            q.dtype = dtype
            return q
        return QuantLinear.from_float(m.weight, s, name)

    with torch.no_grad():
        _swap(model, make)
    return model


def quantized_skeleton(model: Gemma, scheme: Scheme) -> Gemma:
    """Replace `model`'s float layers by empty quantised ones on the meta device, ready for
    `load_state_dict(..., assign=True)`: loading a quantised checkpoint never builds float weights."""
    _check_fits(model, scheme)
    dtype = model.dtype

    def make(name: str, m: nn.Module) -> QuantWeight:
        out, width = m.weight.shape
        if isinstance(m, Embedding):
            q = QuantEmbedding.empty(scheme.for_embedding, out, width, name)
            q.dtype = dtype
            return q
        return QuantLinear.empty(scheme, out, width, name)

    _swap(model, make)
    return model


def check_requested(have: Scheme | None, scheme: str | None, group_size: int | None, where: str) -> None:
    """A checkpoint stored quantised loads only with its own scheme (or no request)."""
    if have is None or (scheme is None and group_size is None):
        return
    name = scheme or have.name
    if name == have.name and group_size is None:  # asking for the stored scheme by name alone
        return
    want = Scheme.make(name, group_size)
    if (want.name, want.group_size) != (have.name, have.group_size):  # what a request can choose
        raise InputError(f"{where}: is stored quantised as {have}; it cannot be loaded as {want} "
                         f"(load the float model to quantise it differently, or drop quantize=)")
