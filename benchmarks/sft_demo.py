"""LoRA SFT of the real gemma3-270m on the embedded default set, judged on held-out tasks.

Trains `configs/sft-lora.toml` (optionally fewer steps), then generates greedily for the prompts
of the natural-instructions tasks held out of training (sft_default/heldout.jsonl.gz), with the
base model and with the tuned one, and reports before/after:
  (a) the share of replies that end with <end_of_turn> within `--max-new-tokens` tokens;
  (b) exact match and ROUGE-L (`gemmaforge.eval.scoring.rouge_l`) against the tasks' targets;
  (c) the side-by-side judge's win rate of the tuned model against the base model on the same
      prompts (reference-guided: the judge sees the task's target), both orders, ties as one half,
      with a Wilson 95% interval and the position-flip rate;
  (d) a fixed `--harness-limit`-question slice of MMLU and of ARC-Easy through the eval harness
      (the harness's fixed permutation), before and after, with the change and its paired
      standard error (the same questions both times).
The offline judge is gemma3-270m judging itself before and after tuning: not the "larger, more
capable" judge of the recipe (bring one with `--judge http://host:port/v1 --judge-model NAME`).

    python benchmarks/sft_demo.py [--steps 200] [--global-batch 16] [--per-task 20] [--harness-limit 500] [--threads 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from head_to_head import replies, tally, win_rate

import gemmaforge as gf
from gemmaforge.eval import run_eval
from gemmaforge.eval.scoring import rouge_l
from gemmaforge.judge import JudgeItem, judge_name, load_judge
from gemmaforge.train.config import TrainConfig
from gemmaforge.train.sft import DEFAULT_SET, sft

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sft-lora.toml"


def score(heldout: list[dict], got: list[tuple[str, bool]]) -> dict:
    per_task = defaultdict(list)
    for h, (text, stopped) in zip(heldout, got, strict=True):
        per_task[h["task"]].append((stopped, text.strip() == h["target"].strip(), rouge_l(text, h["target"])))
    rows = [r for rs in per_task.values() for r in rs]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {"stops": mean([r[0] for r in rows]), "exact_match": mean([r[1] for r in rows]),
            "rouge_l": mean([r[2] for r in rows]),
            "per_task": {t: {"stops": mean([r[0] for r in rs]), "rouge_l": mean([r[2] for r in rs])}
                         for t, rs in per_task.items()}}


def judged(judge, heldout: list[dict], tuned: list[str], base: list[str]) -> dict:
    """(c): the tuned model's replies as A against the base model's as B, each pair in both orders."""
    items = [JudgeItem(h["prompt"], t, b, reference=h["target"]) for h, t, b in zip(heldout, tuned, base, strict=True)]
    return win_rate(tally(judge, items), judge_name(judge))


def harness(source: str, out: Path, limit: int, overwrite: bool) -> dict[str, dict]:
    """(d): accuracy per task (micro: MMLU's harness headline is the macro mean over subjects) and each
    question's correctness, for the paired change. Without `overwrite`, an earlier run's results in
    `out` with the same settings are kept (the base model's, across reruns of this script)."""
    results = run_eval(source, ["mmlu", "arc_easy"], limit=limit, output_dir=str(out), overwrite=overwrite)
    report = {}
    for t in results.tasks:
        lines = (out / Path(t.samples_file).name).read_text().splitlines() if t.samples_file else []
        per_item = {(s := json.loads(line))["id"]: s["verdict"]["acc"] for line in lines}
        report[t.task] = {"metric": "acc", "value": t.metrics["acc"].value, "n": t.n, "items": per_item}
    return report


def paired_change(before: dict, after: dict) -> dict:
    ids = sorted(before["items"].keys() & after["items"].keys())
    d = [after["items"][i] - before["items"][i] for i in ids]
    m = sum(d) / len(d)
    se = (sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5 if len(d) > 1 else float("nan")
    return {"before": before["value"], "after": after["value"], "change": m, "stderr": se, "n": len(d)}


def markdown(r: dict) -> str:
    """The committed report: (a)-(d) before and after, the judge, the harness change."""
    b, a, j, t = r["before"], r["after"], r["judge"], r["train"]
    lines = [f"# LoRA SFT of gemma3-270m on the default set: {r['heldout_prompts']} held-out prompts before and after",
             "", f"`{r.get('command', 'python benchmarks/sft_demo.py')}` — {t['steps']} steps, "
             f"{t['tokens_trained']:,} trained (model-turn) tokens; training {t['train_s'] / 60:.1f} min, "
             f"whole script {r['wall_s'] / 60:.1f} min, {r['threads']} threads.", "",
             "| held-out tasks | before | after |", "|---|---:|---:|",
             f"| (a) replies ending with `<end_of_turn>` | {b['stops']:.1%} | {a['stops']:.1%} |",
             f"| (b) exact match | {b['exact_match']:.1%} | {a['exact_match']:.1%} |",
             f"| (b) ROUGE-L F1 | {b['rouge_l']:.3f} | {a['rouge_l']:.3f} |", "",
             "| task | ends with `<end_of_turn>` before → after | ROUGE-L before → after |", "|---|---|---|"]
    per = [(task, b["per_task"][task], a["per_task"][task]) for task in b["per_task"]]
    lines += [f"| {task} | {x['stops']:.0%} → {y['stops']:.0%} | {x['rouge_l']:.3f} → {y['rouge_l']:.3f} |"
              for task, x, y in per]
    lo, hi = j["win_rate_ci95"]
    flo, fhi = j["position_flip_rate_ci95"]
    lines += ["", f"(c) Judge {j['judge']} (reference-guided, both orders): tuned vs base on {j['pairs']} pairs — "
              f"{j['wins']} wins, {j['losses']} losses, {j['ties']} ties; win rate {j['win_rate']:.3f} "
              f"[{lo:.3f}, {hi:.3f}]; position flips {j['position_flip_rate']:.1%} [{flo:.1%}, {fhi:.1%}].", "",
              "(d) Eval harness, the same questions before and after (paired):", "",
              "| task | n | before | after | change | standard error |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {h['n']} | {h['before']:.3f} | {h['after']:.3f} | {h['change']:+.3f} | {h['stderr']:.3f} |"
              for name, h in r["harness"].items()]
    if r.get("examples"):
        lines += ["", "Examples (every 20th held-out prompt, replies cut at 200 characters):", "",
                  "| task | target | before | after |", "|---|---|---|---|"]
        cell = lambda x: repr(x[:200]).replace("|", "\\|")  # noqa: E731
        lines += [f"| {e['task']} | {cell(e['target'])} | {cell(e['before'])} | {cell(e['after'])} |"
                  for e in r["examples"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the config's)")
    ap.add_argument("--global-batch", type=int, default=None, help="train.global_batch (default: the config's)")
    ap.add_argument("--per-task", type=int, default=20, help="held-out prompts scored per task")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--harness-limit", type=int, default=500, help="MMLU and ARC-Easy questions, each")
    ap.add_argument("--judge", default="gemma3-270m", help="a model source or an OpenAI-compatible endpoint URL")
    ap.add_argument("--judge-model", default=None, help="the endpoint's model name")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--report-only", action="store_true", help="rewrite sft_demo.md from sft_demo.json")
    args = ap.parse_args()
    if args.report_only:
        (args.out / "sft_demo.md").write_text(markdown(json.loads((args.out / "sft_demo.json").read_text())))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig.load(CONFIG)
    if args.steps or args.global_batch:
        config = config.replace(train={k: v for k, v in (("max_steps", args.steps),
                                                          ("global_batch", args.global_batch)) if v})
    heldout = [json.loads(line) for line in gzip.decompress((DEFAULT_SET / "heldout.jsonl.gz").read_bytes())
               .decode().splitlines()]
    by_task = defaultdict(list)
    for h in heldout:
        by_task[h["task"]].append(h)
    heldout = [h for items in by_task.values() for h in items[:args.per_task]]
    tok = gf.load_tokenizer("gemma3-270m")
    started = time.perf_counter()
    work = Path("runs/sft_demo").resolve()  # the base model's outputs, kept across reruns (ignored by git)
    cached = work / f"base_replies_{args.per_task}_{args.max_new_tokens}.json"
    if cached.exists():
        base_replies = [tuple(r) for r in json.loads(cached.read_text())]
    else:
        base = gf.load_model("gemma3-270m")
        base_replies = replies(base, tok, [h["prompt"] for h in heldout], args.max_new_tokens)
        del base
        work.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(base_replies))
    base_eval = harness("gemma3-270m", work / "eval_base", args.harness_limit, overwrite=False)
    summary = sft(config, resume=True)
    tuned = gf.load_model(summary["model"])
    tuned_replies = replies(tuned, tok, [h["prompt"] for h in heldout], args.max_new_tokens)
    del tuned
    tuned_eval = harness(summary["model"], work / "eval_tuned", args.harness_limit, overwrite=True)
    judge = load_judge(args.judge, model_name=args.judge_model, progress=True)
    report = {"before": score(heldout, base_replies), "after": score(heldout, tuned_replies),
              "judge": judged(judge, heldout, [r[0] for r in tuned_replies], [r[0] for r in base_replies]),
              "harness": {t: paired_change(base_eval[t], tuned_eval[t]) for t in base_eval},
              "train": summary, "heldout_prompts": len(heldout),
              "examples": [{"task": h["task"], "prompt": h["prompt"], "target": h["target"], "before": b[0],
                            "after": t[0]} for h, b, t in list(zip(heldout, base_replies, tuned_replies))[::20]],
              "command": "python " + " ".join(sys.argv), "wall_s": time.perf_counter() - started,
              "threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft_demo.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "sft_demo.md").write_text(markdown(report))
    print(json.dumps({k: report[k] for k in ("before", "after", "judge", "harness", "wall_s")}, indent=2))


if __name__ == "__main__":
    main()
