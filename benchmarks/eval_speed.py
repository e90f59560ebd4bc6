"""Evaluation speed on this machine: a full greedy HumanEval pass@1 and a 1,000-question MMLU
slice of the shipped gemma3-270m, each expected within 30 minutes on 2 CPU cores.

    python benchmarks/eval_speed.py --output runs/eval_speed            # both
    python benchmarks/eval_speed.py --tasks mmlu --mmlu-limit 200         # a quicker look

Prints items per second per task and writes results.json/results.md (with the per-sample logs)
plus speed.json in --output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from gemmaforge.eval import run_eval

BUDGET_S = 30 * 60


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="humaneval,mmlu")
    p.add_argument("--mmlu-limit", type=int, default=1000)
    p.add_argument("--humaneval-limit", type=int, default=None, help="default: all 164 problems")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--output", default="runs/eval_speed")
    args = p.parse_args()
    limits = {"mmlu": args.mmlu_limit, "humaneval": args.humaneval_limit}
    rows = []
    for task in args.tasks.split(","):
        start = time.monotonic()
        res = run_eval("gemma3-270m", [task], limit=limits.get(task), batch_size=args.batch_size,
                       threads=args.threads, output_dir=str(Path(args.output) / task),
                       command=" ".join(sys.argv), overwrite=True)[task]  # a timing: never resumed
        seconds = time.monotonic() - start  # model load included
        m = res.metrics[res.primary]
        rows.append({"task": task, "n": res.n, "primary": res.primary, "value": m.value, "stderr": m.stderr,
                     "seconds": round(seconds, 1), "items_per_s": round(res.n / seconds, 3),
                     "within_30_min": seconds <= BUDGET_S})
        print(f"{task}: {res.n} items in {seconds:.0f} s = {res.n / seconds:.3f} items/s; "
              f"{res.primary} = {m.value:.4f} ± {m.stderr:.4f}", flush=True)
    info = {"rows": rows, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
            "command": " ".join(sys.argv)}
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "speed.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0 if all(r["within_30_min"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
