"""How gemma3-270m (pretrained, not instruction tuned) behaves as the offline default judge.

    python benchmarks/judge_270m.py --items 16 --prompts 8 --threads 1 --work runs/judge_270m

1. Known-answer pairs: items of the OpenAI `evals` registry's `which_is_heavier` set (a Yes/No
   question with its `ideal`), each judged as the pair (right answer, wrong answer) in both orders,
   with and without the reference shown, and once more as a plain completion prompt without the
   chat template. A judge that reads content picks the right answer and agrees with itself across
   orders; one that reads position flips.
2. `sft select` on real prompts: gemma3-270m answers `--prompts` questions greedily and with
   temperature 0.8 / top-p 0.95, and judges the two side by side. Its summary (win rates, tie and
   position-flip rates) is copied into the report.
Writes judge_270m.json and judge_270m.md in --work (committed copies: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import torch

import gemmaforge as gf
from gemmaforge.judge import JudgeItem, LocalJudge, load_prompt
from gemmaforge.selection import SelectOptions, run_select
from gemmaforge.selection.summary import wilson


def registry_file(name: str) -> Path:
    spec = importlib.util.find_spec("evals")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the data package `evals` (pip install --no-deps evals==3.0.1.post1)")
    return Path(spec.origin).parent / "registry" / "data" / name


def known_answer_pairs(n: int) -> list[tuple[str, str, str]]:
    """(question, right answer, wrong answer) from which_is_heavier, the first n items."""
    rows = [json.loads(line) for line in registry_file("which_is_heavier/which_is_heavier.jsonl").open()][:n]
    out = []
    for r in rows:
        question = r["input"][-1]["content"]
        right = r["ideal"].strip()
        wrong = "No" if right == "Yes" else "Yes"
        out.append((question, f"{right}.", f"{wrong}."))
    return out


def judge_known(judge: LocalJudge, pairs: list[tuple[str, str, str]], reference: bool) -> dict:
    items = [JudgeItem(q, right, wrong, right.rstrip(".") if reference else None) for q, right, wrong in pairs]
    out = judge.judge(items)
    n = len(out)
    right = sum(j.verdict == "a" for j in out)
    flips = sum(j.flipped for j in out)
    first = sum((j.p_a_first > 0.5) + (j.p_a_second < 0.5) for j in out)  # shown-first wins, per order
    order_right = sum((j.p_a_first > 0.5) + (j.p_a_second > 0.5) for j in out)
    return {"framing": "chat template, reference shown" if reference else "chat template", "items": n,
            "right_verdicts": right,
            "ties": sum(j.verdict == "tie" for j in out), "wrong_verdicts": sum(j.verdict == "b" for j in out),
            "position_flip_rate": flips / n, "position_flip_ci95": wilson(flips, n),
            "first_shown_wins": first / (2 * n), "first_shown_wins_ci95": wilson(first, 2 * n),
            "single_order_accuracy": order_right / (2 * n),
            "mean_label_mass": sum(j.mass_first + j.mass_second for j in out) / (2 * n)}


def judge_known_completion(judge: LocalJudge, pairs: list[tuple[str, str, str]]) -> dict:
    """The same pairs as a plain completion prompt (no chat template: the 270M is not instruction
    tuned), read from the next-token probabilities of " A" and " B"."""
    tok = judge.tok
    labels = [tok.encode(" A", add_bos=False)[0], tok.encode(" B", add_bos=False)[0]]

    def text(q: str, a: str, b: str) -> list[int]:
        return tok.encode(f"Question: {q}\n\nAnswer A: {a}\nAnswer B: {b}\n\n"
                          "The correct answer to the question is Answer")

    seqs = [ids for q, right, wrong in pairs for ids in (text(q, right, wrong), text(q, wrong, right))]
    saved, judge.label_ids = judge.label_ids, labels
    try:
        p = judge.label_probs(seqs)
    finally:
        judge.label_ids = saved
    n = len(pairs)
    right_first = [float(p[2 * i, 0] / p[2 * i].sum()) for i in range(n)]  # P(right) when shown first
    right_second = [float(p[2 * i + 1, 1] / p[2 * i + 1].sum()) for i in range(n)]  # ... when shown second
    flips = sum((a - 0.5) * (b - 0.5) < 0 for a, b in zip(right_first, right_second))
    first = sum(a > 0.5 for a in right_first) + sum(b < 0.5 for b in right_second)
    return {"framing": "completion", "items": n,
            "right_verdicts": sum(a > 0.5 and b > 0.5 for a, b in zip(right_first, right_second)),
            "wrong_verdicts": sum(a < 0.5 and b < 0.5 for a, b in zip(right_first, right_second)),
            "ties": n - sum((a - 0.5) * (b - 0.5) > 0 for a, b in zip(right_first, right_second)),
            "position_flip_rate": flips / n, "position_flip_ci95": wilson(flips, n),
            "first_shown_wins": first / (2 * n), "first_shown_wins_ci95": wilson(first, 2 * n),
            "single_order_accuracy": (sum(a > 0.5 for a in right_first) + sum(b > 0.5 for b in right_second)) / (2 * n),
            "mean_label_mass": float(p.sum(1).mean())}


def selection_prompts(path: Path, n: int) -> Path:
    """The last n which_is_heavier prompts (not those of part 1; system + user turn, ideal as reference)."""
    rows = [json.loads(line) for line in registry_file("which_is_heavier/which_is_heavier.jsonl").open()]
    path.write_text("".join(json.dumps({"messages": r["input"], "ideal": r["ideal"]}) + "\n" for r in rows[-n:]))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/judge_270m"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    model, tok = gf.load_model("gemma3-270m"), gf.load_tokenizer("gemma3-270m")
    judge = LocalJudge(model, tok, load_prompt(), batch_size=4, name="gemma3-270m")
    pairs = known_answer_pairs(args.items)
    known = [judge_known(judge, pairs, reference=False), judge_known(judge, pairs, reference=True),
             judge_known_completion(judge, pairs)]
    prompts = selection_prompts(args.work / "prompts.jsonl", args.prompts)
    out = args.work / "select"
    start = time.perf_counter()
    summary = run_select(prompts, ["gemma3-270m,gemma3-270m@temperature=0.8,top_p=0.95,seed=1"], judge, out,
                         SelectOptions(max_new_tokens=args.max_new_tokens, batch_size=8))
    select_seconds = time.perf_counter() - start
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                          "torch": torch.__version__, "note": "shared machine (other jobs running)"},
              "known_answer": known, "select": summary, "select_seconds": round(select_seconds, 1)}
    (args.work / "judge_270m.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.work / "judge_270m.md").write_text(markdown(report, out))
    print(markdown(report, out))


def markdown(r: dict, select_dir: Path) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.0f}%"

    lines = ["# gemma3-270m as a side-by-side judge", "",
             f"Threads: {r['machine']['threads']}, torch {r['machine']['torch']}; {r['machine']['note']}.", "",
             "## Known-answer pairs (`evals` registry, `which_is_heavier`: right vs wrong Yes/No answer)", "",
             "| prompt | items | right verdicts | ties | wrong | position-flip rate (95% CI) | "
             "first-shown wins | single-order accuracy | label mass |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k in r["known_answer"]:
        lo, hi = k["position_flip_ci95"]
        lines.append(f"| {k['framing']} | {k['items']} | {k['right_verdicts']} | "
                     f"{k['ties']} | {k['wrong_verdicts']} | {pct(k['position_flip_rate'])} ({pct(lo)}–{pct(hi)}) | "
                     f"{pct(k['first_shown_wins'])} | {pct(k['single_order_accuracy'])} | "
                     f"{100 * k['mean_label_mass']:.1f}% |")
    lines += ["", f"## `sft select`: greedy vs sampled gemma3-270m, judged by itself ({r['select_seconds']} s)", "",
              (select_dir / "summary.md").read_text().replace("# Selection summary\n", "").strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
