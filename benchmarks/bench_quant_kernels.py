"""Quantised matrix products on this CPU: which kernel is fastest, shape by shape.

For gemma3-270m's weight shapes (batch-1 decode: 1 row; batched decode: 4 and 16 rows; prefill: 512
rows; the 262144x640 tied output projection) it times, interleaved in one process, the float32
product and every int8/int4 candidate: our torch.compile'd dequantise-and-reduce, dequantise+matmul
by blocks, PyTorch's `_weight_int8pack_mm` / `_weight_int4pack_mm_for_cpu`, and torchao's
weight-only tensors when torchao is installed (`pip install -c constraints-cpu.txt torchao==0.18.0`;
not in the dev extra: once installed, transformers imports it and logs load failures on every
import). Each candidate's error against the float product of the same dequantised weight is
recorded, so "fastest" means fastest among the exact ones.

    python benchmarks/bench_quant_kernels.py [--threads 1] [--rounds 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from gemmaforge.model import linear
from gemmaforge.quant import kernels
from gemmaforge.quant.schemes import Scheme, dequantize, quantize_weight, unpack_int4
from gemmaforge.util.machine import cpu_name

D, FFN, Q, KV, V = 640, 2048, 1024, 256, 262144
CASES = [  # (what, out, in, rows)
    ("q_proj decode", Q, D, 1), ("k/v_proj decode", KV, D, 1), ("o_proj decode", D, Q, 1),
    ("gate/up decode", FFN, D, 1), ("down decode", D, FFN, 1), ("output proj decode", V, D, 1),
    ("gate/up batch 4", FFN, D, 4), ("gate/up batch 16", FFN, D, 16),
    ("output proj batch 4", V, D, 4), ("output proj batch 16", V, D, 16),
    ("gate/up prefill 512", FFN, D, 512), ("down prefill 512", D, FFN, 512), ("q_proj prefill 512", Q, D, 512),
]
EXACT = 1e-4  # max |error| / max |reference|: float rounding, not a different answer


def torchao_linear(w: torch.Tensor, scheme: str) -> Callable | None:
    """A Linear quantised by torchao (None when torchao is missing or refuses the config here)."""
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        return None
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data.copy_(w)
    try:
        quantize_(lin, Int8WeightOnlyConfig() if scheme == "int8" else Int4WeightOnlyConfig(group_size=32))
        lin(torch.randn(1, w.shape[1]))
    except Exception as e:  # noqa: BLE001 - recorded, not fatal: torchao's CPU support varies by version
        print(f"  torchao {scheme}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        return None
    return lin


def candidates(w: torch.Tensor, x: torch.Tensor) -> dict[str, tuple[Callable, torch.Tensor]]:
    """name -> (call, reference output it must match)."""
    p8 = quantize_weight(w, Scheme.make("int8"))
    p4 = quantize_weight(w, Scheme.make("int4", 32))
    ref8 = x @ dequantize(p8).t()
    ref4 = x @ dequantize(p4).t()
    ref = x @ w.t()
    c8 = kernels._reduction(p8)
    c4 = kernels._reduction(p4)
    n, k = w.shape
    # tinygemm's format: w = (q - 8) * scale + zero, scales/zeros [K/gs, N, 2]
    packed4 = torch._convert_weight_to_int4pack_for_cpu(unpack_int4(p4.codes, k // 32).to(torch.int32), 1)
    sz = torch.stack((p4.scales.float(), p4.zeros.float() + 8 * p4.scales.float()), -1).transpose(0, 1).contiguous()
    out = {
        "fp32 F.linear": (lambda: F.linear(x, w), ref),
        "fp32 gemmaforge linear": (lambda: linear(x, w), ref),
        "int8 compiled reduce": (lambda: c8(x, p8.codes, p8.scales), ref8),
        "int8 dequant+matmul": (lambda: kernels.matmul_blocks(x, p8), ref8),
        "int8 _weight_int8pack_mm": (lambda: torch._weight_int8pack_mm(x, p8.codes, p8.scales[:, 0]), ref8),
        "int4 compiled reduce": (lambda: c4(x, p4.codes, p4.scales, p4.zeros), ref4),
        "int4 dequant+matmul": (lambda: kernels.matmul_blocks(x, p4), ref4),
        "int4 _weight_int4pack_mm_for_cpu": (lambda: torch._weight_int4pack_mm_for_cpu(x, packed4, 32, sz), ref4),
    }
    for scheme in ("int8", "int4"):
        lin = torchao_linear(w, scheme)
        if lin is not None:
            # torchao quantises with its own rounding: compare with the float product instead
            out[f"{scheme} torchao {type(lin.weight).__name__}"] = (lambda lin=lin: lin(x), ref)
    return out


def measure(fn: Callable, seconds: float = 0.05) -> float:
    """Milliseconds per call, over at least `seconds` of calls."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or n < 2:
        fn()
        n += 1
    return elapsed / n * 1e3


def run_case(what: str, n: int, k: int, rows: int, rounds: int) -> dict:
    torch.manual_seed(0)
    w = torch.randn(n, k) * 0.05
    x = torch.randn(rows, k)
    cands = candidates(w, x)
    result = {"case": what, "out": n, "in": k, "rows": rows, "kernels": {}}
    with torch.inference_mode():
        for name, (fn, ref) in cands.items():
            start = time.perf_counter()
            got = fn()
            first = time.perf_counter() - start
            err = float((got.float() - ref).abs().max() / ref.abs().max())
            result["kernels"][name] = {"rel_err": err, "first_call_s": first, "ms": []}
        for _ in range(rounds):  # interleaved: every candidate sees the same load on a shared machine
            for name, (fn, _) in cands.items():
                result["kernels"][name]["ms"].append(measure(fn))
    # On a shared machine the best round is the kernel's own speed; the median shows the contention.
    base = min(result["kernels"]["fp32 F.linear"]["ms"])
    for r in result["kernels"].values():
        ms = r.pop("ms")
        r["best_ms"], r["median_ms"] = min(ms), statistics.median(ms)
        r["vs_fp32"] = base / r["best_ms"]
    for scheme in ("int8", "int4"):
        exact = {k: v for k, v in result["kernels"].items() if k.startswith(scheme) and "torchao" not in k
                 and v["rel_err"] < EXACT}
        result[f"fastest_{scheme}"] = min(exact, key=lambda k: exact[k]["best_ms"])
    return result


def markdown(report: dict) -> str:
    lines = [f"# Quantised matmul kernels on this CPU ({report['cpu']}, {report['threads']} thread(s), "
             f"torch {report['torch']}, torchao {report['torchao']})", "",
             report["note"], "",
             "Milliseconds per call (best and median of interleaved rounds) and the best round's speed-up "
             "over float32 `F.linear` in the same run; `err` is max |Δ| / max |ref| against the float "
             "product of the same dequantised weight (torchao: against the float weight; it rounds its own way).",
             ""]
    for case in report["cases"]:
        lines.append(f"## {case['case']}: [{case['rows']} x {case['in']}] @ [{case['out']} x {case['in']}]^T")
        lines.append(f"fastest exact: int8 **{case['fastest_int8']}**, int4 **{case['fastest_int4']}**")
        lines.append("")
        lines.append("| kernel | best ms | median ms | vs fp32 | err | first call s |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for name, r in case["kernels"].items():
            lines.append(f"| {name} | {r['best_ms']:.3f} | {r['median_ms']:.3f} | {r['vs_fp32']:.2f}x | "
                         f"{r['rel_err']:.1e} | {r['first_call_s']:.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--note", default="", help="what else ran on the machine (printed with the results)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import torchao
        ao = torchao.__version__
    except ImportError:
        ao = "not installed"
    cases = []
    for what, n, k, rows in CASES:
        print(f"{what} ...", flush=True)
        cases.append(run_case(what, n, k, rows, args.rounds))
        c = cases[-1]
        print(f"  fastest exact int8: {c['fastest_int8']} ({c['kernels'][c['fastest_int8']]['vs_fp32']:.2f}x fp32), "
              f"int4: {c['fastest_int4']} ({c['kernels'][c['fastest_int4']]['vs_fp32']:.2f}x)", flush=True)
    report = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "torchao": ao,
              "note": args.note, "cases": cases}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quant_kernels.json").write_text(json.dumps(report, indent=2))
    (args.out / "quant_kernels.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
