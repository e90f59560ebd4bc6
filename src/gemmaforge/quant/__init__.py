"""Weight-only int8/int4 quantisation, applied from outside the model.

`quantize(model, "int8" | "int4", group_size=…, mix=…)` swaps every `Linear` and the tied embedding for
modules that hold integer codes (`modules.py`); the model's code is unchanged, so `generate`,
`stream`, `ChatSession` and `eval` run it as they run a float model. Activations stay in the model's
dtype (float32 on CPU). See docs/quantize.md. Names load on first use, so the CLI's `--quantize`
option (quant/cli.py) costs no torch import.
"""

from __future__ import annotations

import importlib
from typing import Any

SCHEMES = ("int8", "int4")
MIXES = ("q4_k_m", "none")  # int4: which layers are stored in int8 instead (Scheme.for_layer); none: no layer
DEFAULT_MIX = {"int8": "none", "int4": "q4_k_m"}  # int4's default meets its +3% NLL goal; plain int4 missed it
_LAZY = {
    "quantize": ".api", "scheme_of": ".api", "quantized_skeleton": ".api", "check_requested": ".api",
    "layer_schemes": ".api",
    "Scheme": ".schemes", "set_kernel": ".kernels", "QuantLinear": ".modules", "QuantEmbedding": ".modules",
}
__all__ = ["DEFAULT_MIX", "MIXES", "SCHEMES", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gemmaforge.quant' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
