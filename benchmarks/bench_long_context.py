"""Long prompts and long chats on the real gemma3-270m: each optimisation against its own baseline,
measured in the same run, with the generated tokens compared.

- prefill: a long prompt in chunks of PREFILL_CHUNK tokens vs in one forward pass (the mask of one
  pass grows with the square of the prompt). Reported: seconds to the first token and peak RSS,
  each in a fresh subprocess so the peaks do not mix.
- chat: a turn after a long history with the KV cache kept between turns (`ChatSession`) vs the
  whole history prefilled again (`stream` on the full prompt), in one process.

    python benchmarks/bench_long_context.py [--prompt-tokens 8192] [--history-tokens 1100]
                                            [--threads N] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from gemmaforge.util.machine import cpu_name

TEXT = "The history of the city is long and varied, and its people remember it well. "


def load(threads: int):
    import torch

    import gemmaforge as gf

    torch.set_num_threads(threads)
    return gf.load_model("gemma3-270m"), gf.load_tokenizer("gemma3-270m")


def prefill_child(args) -> dict:
    """One long prompt, chunked or in one pass; seconds to its first token and peak RSS."""
    gen = importlib.import_module("gemmaforge.inference.generate")  # `gemmaforge.inference.generate` is also a function

    model, tok = load(args.threads)
    if args.child == "one-pass":
        gen.PREFILL_CHUNK = 1 << 30
    ids = tok.encode(TEXT * (args.prompt_tokens // 10))[:args.prompt_tokens]
    start = time.perf_counter()
    first = next(iter(gen.Decoder(model, [ids], 4)))
    return {"seconds_to_first_token": time.perf_counter() - start, "first_token": first[0],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def chat_turns(args) -> dict:
    """A long first message, then short turns: the cached session vs a fresh prefill each turn."""
    import gemmaforge as gf
    from gemmaforge.inference.generate import stream

    model, tok = load(args.threads)
    session = gf.ChatSession(model, tok, max_new_tokens=24)
    rows = []
    for text in [TEXT * (args.history_tokens // 16), "And what happened next?", "Tell me more."]:
        prompt = tok.encode(tok.apply_chat_template(session.messages + [{"role": "user", "content": text}],
                                                    add_generation_prompt=True))
        t0 = time.perf_counter()
        fresh = "".join(stream(model, tok, prompt, 24))
        t1 = time.perf_counter()
        cached = "".join(session.send(text))
        t2 = time.perf_counter()
        rows.append({"prompt_tokens": len(prompt), "fresh_s": t1 - t0, "cached_s": t2 - t1,
                     "same_text": fresh == cached})
    return {"turns": rows}


def markdown(r: dict) -> str:
    one, chunked = r["prefill"]["one-pass"], r["prefill"]["chunked"]
    lines = ["# Long context: chunked prefill and the chat's kept KV cache (gemma3-270m, float32)", "",
             f"## Prefill of a {r['prompt_tokens']}-token prompt", "",
             "| | one pass | chunked | chunked vs one pass |", "|---|---|---|---|",
             f"| seconds to the first token | {one['seconds_to_first_token']:.1f} | "
             f"{chunked['seconds_to_first_token']:.1f} | "
             f"{one['seconds_to_first_token'] / chunked['seconds_to_first_token']:.2f}x faster |",
             f"| peak RSS (MB) | {one['peak_rss_mb']:.0f} | {chunked['peak_rss_mb']:.0f} | "
             f"{chunked['peak_rss_mb'] / one['peak_rss_mb']:.2f}x |",
             f"| first token | {one['first_token']} | {chunked['first_token']} | "
             f"{'same' if one['first_token'] == chunked['first_token'] else 'DIFFERENT'} |",
             "", "## Chat turns (24 new tokens each)", "",
             "| turn | prompt tokens | history prefilled again (s) | cache kept (s) | speed-up | same text |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {i + 1} | {t['prompt_tokens']} | {t['fresh_s']:.2f} | {t['cached_s']:.2f} | "
              f"{t['fresh_s'] / t['cached_s']:.2f}x | {'yes' if t['same_text'] else 'NO'} |"
              for i, t in enumerate(r["chat"]["turns"])]
    env = r["environment"]
    lines += ["", f"- CPU: {env['cpu']}, {env['threads']} threads; python {env['python']}, torch {env['torch']}",
              f"- command: `{r['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-tokens", type=int, default=8192)
    ap.add_argument("--history-tokens", type=int, default=1100)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--child", choices=("one-pass", "chunked"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(prefill_child(args)))
        return
    import torch

    prefill = {}
    for mode in ("one-pass", "chunked"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--prompt-tokens", str(args.prompt_tokens),
                               "--threads", str(args.threads)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{mode} failed:\n{proc.stderr[-4000:]}")
        prefill[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"prefill {mode}: {prefill[mode]}", file=sys.stderr)
    report = {"prompt_tokens": args.prompt_tokens, "prefill": prefill, "chat": chat_turns(args),
              "environment": {"cpu": cpu_name(), "threads": args.threads, "python": platform.python_version(),
                              "torch": torch.__version__},
              "command": " ".join(["python", "benchmarks/bench_long_context.py", *sys.argv[1:]])}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long_context.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "long_context.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
