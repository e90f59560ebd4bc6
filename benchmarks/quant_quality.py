"""What weight-only quantisation costs in quality on gemma3-270m: float32 vs int8 vs int4.

- Mean negative log-likelihood per token on held-out text: the last documents of the default
  corpus's `wikipedia_excerpts` part (openai/evals' Wikipedia excerpts; no other benchmark or
  test reads them), each scored from <bos> up to 1024 tokens, until >= 20,480 tokens are scored.
- Greedy agreement with float32 over 128 new tokens on 16 prompts (the first 48 tokens of the
  last 16 `openwebtext` excerpts): the share of identical tokens position by position, the mean
  length of the common prefix, and how many continuations are identical throughout.
- MMLU through the eval harness, when `--mmlu SCHEME=DIR` names `gemmaforge eval --tasks mmlu
  --limit N [--quantize SCHEME] --output DIR` runs (one per scheme, the same N): accuracy, and
  the share of questions answered as float32 answers them.
Targets (issue 15): int8 within +0.5% NLL of float32, int4 within +3%.

    python benchmarks/quant_quality.py [--threads 2] [--tokens 20480] [--out benchmarks/results]

On a shared machine, `--only float32|int8|int4` runs one model (three processes in parallel), and
`--combine` writes the report from their partial results. `--int4-mix none` quantises every int4
layer in int4 instead of int4's default q4_k_m mix (docs/quantize.md; the result's "scheme" names
it; `--out` keeps other reports).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import gemmaforge as gf
from gemmaforge.data.default_corpus import PARTS
from gemmaforge.inference.generate import Decoder
from gemmaforge.quant import MIXES, scheme_of
from gemmaforge.util.machine import cpu_name

SCHEMES = ("float32", "int8", "int4")
TARGET = {"int8": 0.5, "int4": 3.0}  # allowed NLL increase over float32, percent


def held_out(tok, part: str, tokens: int, max_len: int) -> list[list[int]]:
    """Documents from the end of `part`, each <bos> + at most max_len - 1 tokens, >= `tokens` scored."""
    docs = [text for _, text in PARTS[part].documents()][::-1]
    out, total = [], 0
    for text in docs:
        ids = tok.encode(text, add_bos=True)[:max_len]
        if len(ids) < 64:
            continue
        out.append(ids)
        total += len(ids) - 1
        if total >= tokens:
            return out
    raise SystemExit(f"part {part!r} holds only {total} tokens")


@torch.inference_mode()
def nll(model, seqs: list[list[int]], rows: int = 128) -> tuple[float, int]:
    """Mean NLL per predicted token; the output projection runs `rows` positions at a time."""
    total, count = 0.0, 0
    for ids in tqdm(seqs, desc=f"NLL {scheme_of(model) or 'float32'}", leave=False):
        x = torch.tensor([ids])
        hidden = model(x, logits_at="none")[0, :-1]
        targets = x[0, 1:]
        for i in range(0, len(targets), rows):
            logits = model.logits(hidden[i:i + rows]).float()
            total += float(F.cross_entropy(logits, targets[i:i + rows], reduction="sum"))
        count += len(targets)
    return total / count, count


def greedy(model, prompts: list[list[int]], new: int) -> list[list[int]]:
    rows: list[list[int]] = [[] for _ in prompts]
    for step in Decoder(model, prompts, new):  # no stop ids: every row runs `new` tokens
        for r, t in enumerate(step):
            if t is not None:
                rows[r].append(t)
    return rows


def agreement(ref: list[list[int]], got: list[list[int]]) -> dict:
    same = sum(a == b for r, g in zip(ref, got) for a, b in zip(r, g))
    positions = sum(min(len(r), len(g)) for r, g in zip(ref, got))
    prefix = []
    for r, g in zip(ref, got):
        n = 0
        while n < min(len(r), len(g)) and r[n] == g[n]:
            n += 1
        prefix.append(n)
    return {"token_agreement": same / positions, "mean_common_prefix": sum(prefix) / len(prefix),
            "identical_continuations": sum(r == g for r, g in zip(ref, got))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=20480)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--note", default="")
    ap.add_argument("--only", choices=SCHEMES, help="run one model, write its partial result")
    ap.add_argument("--int4-mix", choices=MIXES, default=None, help="the int4 model's mix (default: q4_k_m)")
    ap.add_argument("--combine", action="store_true", help="write the report from the --only results")
    ap.add_argument("--mmlu", action="append", default=[], metavar="SCHEME=DIR",
                    help="an eval --tasks mmlu output directory of that scheme, added to the report")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results, continuations = {}, {}
    for scheme in ([] if args.combine else [args.only] if args.only else SCHEMES):
        results[scheme], continuations[scheme], n_docs = run_one(scheme, args)
        if args.only:
            part = {"result": results[scheme], "continuations": continuations[scheme], "docs": n_docs}
            (args.out / f".quant_quality_{scheme}.json").write_text(json.dumps(part))
            return
    if args.combine:
        for scheme in SCHEMES:
            path = args.out / f".quant_quality_{scheme}.json"
            part = json.loads(path.read_text())
            results[scheme], continuations[scheme], n_docs = part["result"], part["continuations"], part["docs"]
            path.unlink()
    report_all(results, continuations, n_docs, args)


def run_one(scheme: str, args) -> tuple[dict, list[list[int]], int]:
    tok = gf.load_tokenizer("gemma3-270m")
    seqs = held_out(tok, "wikipedia_excerpts", args.tokens, 1024)
    prompts = [tok.encode(t, add_bos=True)[:48] for _, t in PARTS["openwebtext"].documents()][-args.prompts:]
    start = time.perf_counter()
    model = gf.load_model("gemma3-270m", quantize=None if scheme == "float32" else scheme,
                          mix=args.int4_mix if scheme == "int4" else None)
    load_s = time.perf_counter() - start
    mean, count = nll(model, seqs)
    start = time.perf_counter()
    continuation = greedy(model, prompts, args.new_tokens)
    result = {"scheme": str(scheme_of(model) or "float32"), "load_s": load_s, "nll": mean, "tokens": count,
              "generate_s": time.perf_counter() - start,
              "weight_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values())}
    print(scheme, json.dumps(result), flush=True)
    return result, continuation, len(seqs)


def mmlu(dirs: dict[str, Path]) -> dict[str, dict]:
    """Accuracy per scheme from eval output directories, and agreement with float32's answers."""
    out, preds = {}, {}
    for scheme, d in dirs.items():
        task = next(t for t in json.loads((d / "results.json").read_text())["tasks"] if t["task"] == "mmlu")
        rows = [json.loads(line) for line in (d / task["samples_file"]).read_text().splitlines()]
        preds[scheme] = {r["prompt"]: r["extra"]["pred"] for r in rows}
        out[scheme] = {"acc_macro": task["metrics"]["acc_macro"]["value"], "acc": task["metrics"]["acc"]["value"],
                       "n": task["n"], "shots": task["shots"], "seconds": task["seconds"]}
    for scheme in out:
        ref = preds.get("float32", {})
        common = [p for p in preds[scheme] if p in ref]
        if common and scheme != "float32":
            out[scheme]["same_answer_as_float32"] = sum(preds[scheme][p] == ref[p] for p in common) / len(common)
    return out


def report_all(results: dict, continuations: dict, n_docs: int, args) -> None:
    base = results["float32"]["nll"]
    for scheme in ("int8", "int4"):
        r = results[scheme]
        r["nll_increase_pct"] = (r["nll"] / base - 1) * 100
        r["target_pct"] = TARGET[scheme]
        r["meets_target"] = r["nll_increase_pct"] <= TARGET[scheme]
        r.update(agreement(continuations["float32"], continuations[scheme]))
    report = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "note": args.note,
              "held_out": f"last {n_docs} documents of wikipedia_excerpts, {results['float32']['tokens']} tokens",
              "prompts": len(continuations["float32"]), "new_tokens": args.new_tokens, "results": results,
              "mmlu": mmlu({k: Path(v) for k, v in (m.split("=", 1) for m in args.mmlu)})}
    (args.out / "quant_quality.json").write_text(json.dumps(report, indent=2))
    (args.out / "quant_quality.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    res = r["results"]
    lines = [f"# Quantisation quality, gemma3-270m ({r['cpu']}, {r['threads']} threads, torch {r['torch']})", "",
             f"Held out: {r['held_out']}. Greedy: {r['prompts']} prompts x {r['new_tokens']} new tokens, "
             "compared with float32 position by position.", "", r["note"], "",
             "| weights | MiB | NLL/token | vs float32 | target | token agreement | mean common prefix | "
             "identical |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in SCHEMES:
        x = res[s]
        mib = x["weight_bytes"] / 2**20
        if s == "float32":
            lines.append(f"| float32 | {mib:.0f} | {x['nll']:.4f} | - | - | - | - | - |")
        else:
            lines.append(f"| {s} | {mib:.0f} | {x['nll']:.4f} | {x['nll_increase_pct']:+.2f}% | "
                         f"<= +{x['target_pct']}% ({'met' if x['meets_target'] else 'MISSED'}) | "
                         f"{x['token_agreement']:.1%} | {x['mean_common_prefix']:.1f} | "
                         f"{x['identical_continuations']}/{r['prompts']} |")
    if r.get("mmlu"):
        lines += ["", "| weights | MMLU acc_macro | acc | questions | shots | same answer as float32 |",
                  "|---|---:|---:|---:|---:|---:|"]
        for s, m in r["mmlu"].items():
            same = f"{m['same_answer_as_float32']:.1%}" if "same_answer_as_float32" in m else "-"
            lines.append(f"| {s} | {m['acc_macro']:.4f} | {m['acc']:.4f} | {m['n']} | {m['shots']} | {same} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
