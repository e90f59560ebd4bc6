"""Which int4 layout to make the default: held-out NLL and bytes read per decode token, per option.

Each option quantises gemma3-270m's layers and its tied embedding (also the output projection) and
scores the same held-out text as quant_quality.py (the last documents of `wikipedia_excerpts`).
The quantised weights are dequantised into a float32 copy of the model, so the NLL is exactly the
quantised model's (its prefill path is the float product of the dequantised weights) and options
run without compiling kernels. Bytes per decode token: every layer's codes, scales and zeros plus
the whole embedding table (the output projection reads all of it; the lookup one row), plus norms.

    python benchmarks/quant_options.py [--threads 1] [--tokens 20480] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from quant_quality import held_out, nll

import gemmaforge as gf
from gemmaforge.model import Embedding
from gemmaforge.quant import layer_schemes
from gemmaforge.quant.schemes import Scheme, dequantize, quantize_weight
from gemmaforge.util.machine import cpu_name

# name: (layers, their group, their rounding, embedding scheme or None for "as the layers", int4 mix or "none")
OPTIONS = {
    "int4 g32 mse, int8 embedding": ("int4", 32, "mse", "int8", "none"),
    "int4 g32 mse, int4 embedding": ("int4", 32, "mse", "int4", "none"),
    "int4 g32 minmax, int8 embedding": ("int4", 32, "minmax", "int8", "none"),
    "int4 g32 minmax, int4 embedding (old default)": ("int4", 32, "minmax", "int4", "none"),
    "int4 g16 mse, int4 embedding": ("int4", 16, "mse", "int4", "none"),
    "int4 g16 mse, int8 embedding": ("int4", 16, "mse", "int8", "none"),
    "int4 g16 mse, int8 embedding, q4_k_m mix": ("int4", 16, "mse", "int8", "q4_k_m"),
    "int4 g64 mse, int8 embedding": ("int4", 64, "mse", "int8", "none"),
    "int8 (per row)": ("int8", None, None, None, None),
}


def packed_bytes(p) -> int:
    return sum(t.numel() * t.element_size() for t in (p.codes, p.scales, p.zeros) if t is not None)


@torch.no_grad()
def apply(model, originals: dict, scheme: Scheme) -> int:
    """Put the dequantised weights of `scheme` into `model`; returns bytes read per decode token."""
    total = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if n not in originals)
    for name, m, s in layer_schemes(model, scheme):  # each layer in the scheme a quantised model stores it in
        p = quantize_weight(originals[name + ".weight"], s, name)
        total += packed_bytes(p)
        m.weight.copy_(dequantize(p))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=20480)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--only", nargs="*", help="option names to run (default: all)")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = gf.load_tokenizer("gemma3-270m")
    seqs = held_out(tok, "wikipedia_excerpts", args.tokens, 1024)
    model = gf.load_model("gemma3-270m")
    originals = {f"{n}.weight": m.weight.detach().clone() for n, m in model.named_modules()
                 if isinstance(m, (torch.nn.Linear, Embedding))}
    path = args.out / "quant_options.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report.update({"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                   "note": args.note or report.get("note", ""), "held_out_docs": len(seqs)})
    rows = report.setdefault("options", {})
    if "float32" not in rows:
        start = time.perf_counter()
        mean, count = nll(model, seqs)
        rows["float32"] = {"nll": mean, "tokens": count, "bytes_per_token": sum(
            p.numel() * p.element_size() for p in model.parameters()), "seconds": time.perf_counter() - start}
    for name, (layers, group, rounding, emb, mix) in OPTIONS.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        scheme = Scheme.make(layers, group, embedding=emb, rounding=rounding, mix=mix)
        size = apply(model, originals, scheme)
        mean, count = nll(model, seqs)
        rows[name] = {"scheme": scheme.to_dict(), "nll": mean, "tokens": count, "bytes_per_token": size,
                      "nll_increase_pct": (mean / rows["float32"]["nll"] - 1) * 100,
                      "seconds": time.perf_counter() - start}
        print(name, json.dumps(rows[name]), flush=True)
        path.write_text(json.dumps(report, indent=2))
    path.write_text(json.dumps(report, indent=2))
    (args.out / "quant_options.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    rows = r["options"]
    base = rows["float32"]
    lines = [f"# int4 options, gemma3-270m ({r['cpu']}, {r['threads']} thread(s), torch {r['torch']})", "",
             f"Held-out NLL on {base['tokens']} tokens (last {r['held_out_docs']} documents of "
             "wikipedia_excerpts, as quant_quality.py); bytes read per decode token = all layer weights "
             "with their scales and zeros + the whole tied embedding table (output projection) + norms. "
             "`python benchmarks/quant_options.py`.", "", r["note"], "",
             "| option | NLL/token | vs float32 | MB read per token | vs float32 bytes |",
             "|---|---:|---:|---:|---:|"]
    for name, x in rows.items():
        pct = "-" if name == "float32" else f"{x['nll_increase_pct']:+.2f}%"
        lines.append(f"| {name} | {x['nll']:.4f} | {pct} | {x['bytes_per_token'] / 1e6:.1f} | "
                     f"{x['bytes_per_token'] / base['bytes_per_token']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
