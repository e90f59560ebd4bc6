"""LoRA SFT of the real gemma3-270m on the embedded default set, judged on held-out tasks.

Trains `configs/sft-lora.toml` (optionally fewer steps), then generates greedily for the prompts
of the natural-instructions tasks held out of training (sft_default/heldout.jsonl.gz), with the
base model and with the tuned one, and reports before/after:
  (a) the share of replies that end with <end_of_turn> within `--max-new-tokens` tokens;
  (b) exact match and ROUGE-L (word LCS F-measure) against the tasks' targets.
Not yet here (see docs/sft.md): the judge's win rate (c) and the MMLU/ARC slice (d).

    python benchmarks/sft_demo.py [--steps 200] [--per-task 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

import gemmaforge as gf
from gemmaforge.eval.scoring import rouge_l
from gemmaforge.inference.generate import Decoder
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.sft import DEFAULT_SET, sft

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sft-lora.toml"


def replies(model, tok, prompts: list[str], max_new: int, batch: int = 8) -> list[tuple[str, bool]]:
    """(reply, ended with <end_of_turn>) for each prompt, greedy, in the chat format."""
    out = []
    for s in range(0, len(prompts), batch):
        ids = [tok.render_chat([{"role": "user", "content": p}], add_generation_prompt=True)[0]
               for p in prompts[s:s + batch]]
        dec = Decoder(model, ids, max_new, stop_ids=[tok.end_of_turn_id, tok.eos_id], truncate=True)
        rows: list[list[int]] = [[] for _ in ids]
        for step in dec:
            for r, t in enumerate(step):
                if t is not None:
                    rows[r].append(t)
        out += [(tok.decode([t for t in r if t != tok.end_of_turn_id]), bool(r) and r[-1] == tok.end_of_turn_id)
                for r in rows]
    return out


def score(model, tok, heldout: list[dict], max_new: int) -> dict:
    got = replies(model, tok, [h["prompt"] for h in heldout], max_new)
    per_task = defaultdict(list)
    for h, (text, stopped) in zip(heldout, got):
        per_task[h["task"]].append((stopped, text.strip() == h["target"].strip(), rouge_l(text, h["target"])))
    rows = [r for rs in per_task.values() for r in rs]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"stops": mean([r[0] for r in rows]), "exact_match": mean([r[1] for r in rows]),
            "rouge_l": mean([r[2] for r in rows]),
            "per_task": {t: {"stops": mean([r[0] for r in rs]), "rouge_l": mean([r[2] for r in rs])}
                         for t, rs in per_task.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the config's)")
    ap.add_argument("--per-task", type=int, default=20, help="held-out prompts scored per task")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig.load(CONFIG)
    if args.steps:
        config = config.replace(train={"max_steps": args.steps})
    heldout = [json.loads(line) for line in gzip.decompress((DEFAULT_SET / "heldout.jsonl.gz").read_bytes())
               .decode().splitlines()]
    by_task = defaultdict(list)
    for h in heldout:
        by_task[h["task"]].append(h)
    heldout = [h for items in by_task.values() for h in items[:args.per_task]]
    tok = gf.load_tokenizer("gemma3-270m")
    started = time.perf_counter()
    before = score(gf.load_model("gemma3-270m"), tok, heldout, args.max_new_tokens)
    summary = sft(config, resume=True)
    after = score(gf.load_model(summary["model"]), tok, heldout, args.max_new_tokens)
    report = {"before": before, "after": after, "train": summary, "heldout_prompts": len(heldout),
              "wall_s": time.perf_counter() - started, "threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft_demo.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("before", "after", "wall_s")}, indent=2))


if __name__ == "__main__":
    main()
