"""`--quantize` / `--group-size` for the verbs that load a model, and what `info` reports."""

from __future__ import annotations

import argparse

from ..model import Gemma
from . import SCHEMES, scheme_of


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=SCHEMES, default=None,
                   help="weight-only quantisation of every linear layer and the embedding (default: none; "
                        "a checkpoint saved quantised loads quantised)")
    p.add_argument("--group-size", type=int, default=None, metavar="N",
                   help="columns per scale (int8 default: one per row; int4 default: 32)")


def quant_report(model: Gemma) -> dict:
    """The scheme (or None) and the bytes the model's tensors take."""
    scheme = scheme_of(model)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"quantization": str(scheme) if scheme else None, "weight_bytes": size}
