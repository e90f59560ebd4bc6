"""No slowdown: gemmaforge's own decode and training speed, before and after a change, in one run.

Each round runs the gemmaforge child of `bench_decode.py` and of `bench_train.py` from two source
trees — a git revision (checked out into a temporary worktree) and this working tree — alternately,
each in its own process with the same threads, so drift in the machine hits both sides alike. The
result is each side's median and the after/before ratio.

    python benchmarks/before_after.py --before d711348 [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = {  # benchmark -> (script, extra arguments, the number to compare)
    "decode tok/s (short prompt)": ("bench_decode.py", ["--new-tokens", "64"], ("short", "decode_tok_s")),
    "decode tok/s (~500-token prompt)": ("bench_decode.py", ["--new-tokens", "64"], ("long", "decode_tok_s")),
    "training tok/s (46M, batch 8 x 256)": ("bench_train.py", ["--steps", "4", "--warmup", "2", "--peak", "1e11"],
                                            ("tokens_per_s",)),
}


def run_child(tree: Path, script: str, extra: list[str], threads: int) -> dict:
    cmd = [sys.executable, str(tree / "benchmarks" / script), "--child", "gemmaforge", "--threads", str(threads),
           *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree / "src")})
    if done.returncode:
        sys.exit(f"{tree.name}/{script} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pick(result: dict, path: tuple[str, ...]) -> float:
    for key in path:
        result = result[key]
    return float(result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.before], check=True,
                       capture_output=True)
        try:
            samples: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in CHILDREN}
            for _ in range(args.rounds):
                for side, tree in (("before", old), ("after", ROOT)):
                    cache: dict[str, dict] = {}
                    for name, (script, extra, path) in CHILDREN.items():
                        if script not in cache:
                            cache[script] = run_child(tree, script, extra, args.threads)
                        samples[name][side].append(pick(cache[script], path))
                        print(f"{side} {name}: {samples[name][side][-1]:.1f}", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    rows = {name: {side: statistics.median(v) for side, v in s.items()} | {"samples": s}
            for name, s in samples.items()}
    report = {"before": args.before, "threads": args.threads, "rounds": args.rounds,
              "load_average": os.getloadavg(), "results": rows}
    lines = [f"# Before ({args.before}) and after, one run, {args.threads} threads, medians of {args.rounds} "
             f"alternating rounds (load average after: {os.getloadavg()[0]:.1f})", "",
             "| | before | after | after / before |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['before']:.1f} | {r['after']:.1f} | {r['after'] / r['before']:.3f} |"
              for name, r in rows.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "before_after.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "before_after.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
