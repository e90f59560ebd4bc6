"""Prompt-lookup speculative decoding against plain greedy decoding, gemma3-270m, in one run.

The prompts ask the model to edit a text it is given (fix typos, rename a variable in code), so its
continuation repeats much of its input: drafts copied from the prompt are often right. gemma3-270m is
a base model, so the prompts are completions, not chat turns. An open-ended prompt
shows what speculation costs when they are not. Each prompt is decoded plainly and with
`speculative="prompt-lookup"`, alternately; the outputs must be identical token for token.

    python benchmarks/bench_speculative.py [--threads 2] [--new-tokens 160] [--out benchmarks/results]
        [--note "busy machine"]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from gemmaforge.util.machine import cpu_name

TYPOS = ("Text with spelling mistakes:\n"
         "The comittee met on Tuesday to discus the new budjet. After a long debate, the members agred to "
         "increse funding for the libary and to repair the bridge over the river before the winter. The "
         "mayor thanked every one for there hard work and said the town would recieve the first payments "
         "in Febuary.\n\nThe same text with the spelling corrected:\n")
CODE = ("A Python module:\n\n```python\ndef sum_even(values):\n    x = 0\n    for v in values:\n"
        "        if v % 2 == 0:\n            x += v\n    return x\n\n\ndef mean(values):\n    if not values:\n"
        "        return 0.0\n    return sum(values) / len(values)\n```\n\n"
        "The same module with the variable `x` renamed to `total`:\n\n```python\n")
OPEN = "The history of the city of Rome begins"
PROMPTS = {"fix typos": TYPOS, "edit code": CODE, "open-ended (control)": OPEN}


def decode(model, ids: list[int], n: int, stop_ids: set[int], speculative) -> tuple[float, list[int], object]:
    """Seconds from the first decode step to the last (the prefill excluded), tokens, stats."""
    from gemmaforge.inference.generate import Decoder

    dec = Decoder(model, [ids], n, stop_ids=stop_ids, speculative=speculative)
    steps = iter(dec)
    out = [next(steps)[0]]  # the prefill's token
    start = time.perf_counter()
    out += [t for (t,) in steps if t is not None]
    return time.perf_counter() - start, out, dec.stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--note", default="", help="what else ran on the machine (printed with the results)")
    args = ap.parse_args()

    import torch

    import gemmaforge as gf

    torch.set_num_threads(args.threads)
    model, tok = gf.load_model("gemma3-270m"), gf.load_tokenizer("gemma3-270m")
    stop_ids = {tok.eos_id, tok.end_of_turn_id}
    decode(model, tok.encode("Hello"), 8, stop_ids, "prompt-lookup")  # warm-up
    rows = {}
    for name, text in PROMPTS.items():
        ids = tok.encode(text)
        n = args.new_tokens if name != "open-ended (control)" else args.new_tokens // 2
        plain_s, plain, _ = decode(model, ids, n, stop_ids, None)
        spec_s, spec, stats = decode(model, ids, n, stop_ids, "prompt-lookup")
        if spec != plain:
            raise SystemExit(f"{name}: speculative output differs from plain greedy decoding")
        steps = len(plain) - 1  # decode steps timed (the first token comes from the prefill)
        rows[name] = {"prompt_tokens": len(ids), "new_tokens": len(plain), "identical": True,
                      "plain_tok_s": steps / plain_s, "speculative_tok_s": steps / spec_s,
                      "speedup": plain_s / spec_s, "drafted": stats.drafted, "accepted": stats.accepted,
                      "acceptance": stats.acceptance, "forwards": stats.forwards, "plain_forwards": steps,
                      "output": tok.decode([t for t in plain if t not in stop_ids])}
        print(f"{name}: {rows[name]['speedup']:.2f}x, acceptance {stats.acceptance:.0%}")
    report = {"cpu": cpu_name(), "threads": args.threads, "note": args.note, "new_tokens": args.new_tokens,
              "versions": {"torch": torch.__version__, "gemmaforge": gf.__version__,
                           "python": platform.python_version()},
              "settings": vars(gf.PromptLookup()), "results": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speculative.json").write_text(json.dumps(report, indent=2))
    (args.out / "speculative.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = [f"# Prompt-lookup speculative decoding: gemma3-270m, float32, {r['threads']} thread(s)",
             f"CPU: {r['cpu']}; versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()), "",
             r["note"], "",
             f"Greedy, batch 1, completion prompts, up to {r['new_tokens']} new tokens (the control: half); drafts "
             f"of up to {s['num_tokens']} tokens after n-grams of {s['max_ngram']} down to {s['min_ngram']}. Decode "
             "time only (the prefill is the same for both). Output identical token for token in every row.", "",
             "| prompt | prompt tokens | new tokens | plain tok/s | prompt lookup tok/s | speed-up | "
             "accepted / drafted | forward passes (plain -> lookup) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, x in r["results"].items():
        lines.append(f"| {name} | {x['prompt_tokens']} | {x['new_tokens']} | {x['plain_tok_s']:.1f} | "
                     f"{x['speculative_tok_s']:.1f} | {x['speedup']:.2f}x | {x['accepted']} / {x['drafted']} "
                     f"({100 * x['acceptance']:.0f}%) | {x['plain_forwards']} -> {x['forwards']} |")
    lines += ["", "Outputs:", ""]
    for name, x in r["results"].items():
        lines += [f"**{name}**:", "", "```", x["output"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
