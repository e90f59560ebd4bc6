"""`--quantize` / `--group-size` / `--mix` for the verbs that load a model, and what `info` reports."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..util.argtypes import Number
from . import MIXES, SCHEMES

if TYPE_CHECKING:
    from ..model import Gemma

# what gemmaforge.weights.gguf_export writes (kept here so `--help` imports no torch; a test compares them)
GGUF_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=SCHEMES, default=None,
                   help="weight-only quantisation of every linear layer and the embedding (default: none; "
                        "a checkpoint saved quantised loads quantised)")
    p.add_argument("--group-size", type=Number(int, 2), default=None, metavar="N",
                   help="columns per scale (int8 default: one per row; int4 default: 16)")
    p.add_argument("--mix", choices=MIXES, default=None,
                   help="int4: q4_k_m (the default) stores v_proj and down_proj in int8 in the layers "
                        "llama.cpp's Q4_K_M gives more bits (the first and last eighth, every third between; "
                        "docs/quantize.md); none keeps every layer int4")


def quant_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of `load_model` (and `run_eval`) that the options above set."""
    return {"quantize": args.quantize, "group_size": args.group_size, "mix": args.mix}


def add_gguf_type_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gguf-type", choices=GGUF_TYPES, default=None,
                   help="tensor type of --to gguf (default: F32 for a float model, Q8_0 for int8, Q4_1 for "
                        "int4 -- lossless from int4 in groups of 32; the default groups of 16 are re-rounded)")


def quant_report(model: Gemma) -> dict:
    """The scheme (or None), the parameter count (a quantised weight counts its float original's
    entries, not its buffers) and the bytes the model's tensors take."""
    from .api import scheme_of
    from .modules import QuantWeight

    scheme = scheme_of(model)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    quantised = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, QuantWeight))
    return {"parameters": model.num_parameters() + quantised,
            "quantization": str(scheme) if scheme else None, "weight_bytes": size}
