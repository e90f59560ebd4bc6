"""Proof on a verifiable task: does RLOO + LoRA lift gemma3-270m's held-out accuracy on reasoning-gym arithmetic?

gemma3-270m is a pretrained, not instruction-tuned, model: asked in a chat turn it echoes the
question (0% right), but as a plain few-shot completion ("2 + 5 = 7\\n9 - 3 = 6\\n…\\n6 - 8 =") it
answers about half of reasoning-gym's one-digit additions and subtractions (and none whose result is
negative). So the policy is the base model itself with `rl.prompt_format = "plain"`, trained with
`gemmaforge.train.rl.rlhf` and `configs/rl-arithmetic.toml` (RLOO, LoRA, adaptive KL coefficient)
against the generator's own checker (`kind = "reasoning_gym"`: `score_answer` on `extract_answer`,
which reads the reply's first bare-number line; `rl.stop = ["\\n"]` ends a reply with its line).
The held-out questions (the prompt file's last `rl.held_out`) are never trained on; the report
compares their greedy accuracy before and after on the same prompts with a paired test (exact
McNemar on the discordant prompts and a bootstrap 95% interval of the per-prompt difference), and
gives the reward/KL/β curves, the wall and process CPU time, and example replies.

    python benchmarks/rl_demo.py [--config configs/rl-arithmetic.toml] [--steps N] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

TASK = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+", "-"],
        "allow_parentheses": False, "allow_negation": False}
SHOTS = "2 + 5 = 7\n9 - 3 = 6\n4 + 4 = 8\n13 + 5 = 18\n"
SMOOTH = 5  # the KL bound applies to the running mean of this many steps' estimates (each is noisy)


def questions(size: int, seed: int, task: dict = TASK) -> list[dict]:
    import reasoning_gym

    return [json.loads(json.dumps(e)) for e in reasoning_gym.create_dataset("basic_arithmetic", size=size, seed=seed,
                                                                             **task)]


def prompt_text(question: str) -> str:
    """The few-shot completion prompt for reasoning-gym's "Calculate 6 - 8." -> "...\\n6 - 8 =" ."""
    return SHOTS + question.removeprefix("Calculate ").rstrip(".") + " ="


def write_prompts(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": prompt_text(e["question"]), "entry": e,
                                        "dataset": "basic_arithmetic"}) + "\n" for e in questions(size, seed)))


def paired(before: list[float], after: list[float], resamples: int = 10000, seed: int = 0) -> dict:
    """Exact two-sided McNemar test and a percentile bootstrap 95% interval of mean(after - before)."""
    from math import comb

    gained = sum(1 for b, a in zip(before, after) if a > b)
    lost = sum(1 for b, a in zip(before, after) if a < b)
    n = gained + lost
    tail = sum(comb(n, i) for i in range(min(gained, lost) + 1)) / 2 ** n if n else 1.0
    diffs = [a - b for b, a in zip(before, after)]
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(resamples))
    return {"gained": gained, "lost": lost, "mcnemar_p": min(1.0, 2 * tail),
            "diff": sum(diffs) / len(diffs),
            "diff_ci95": [means[int(0.025 * resamples)], means[int(0.975 * resamples)]]}


def wilson(k: float, n: int, z: float = 1.96) -> list[float]:
    p = k / n
    scale = 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / scale, z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5 / scale
    return [centre - half, centre + half]


def cpu_seconds() -> float:
    """CPU time of this process (all its threads), user + system."""
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/rl-arithmetic.toml")
    ap.add_argument("--steps", type=int, default=None, help="override [train] max_steps")
    ap.add_argument("--size", type=int, default=1000, help="questions drawn (the last held_out are held out)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kl-bound", type=float, default=1.0, help="stated bound on the mean per-reply KL (nats)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the run already on disk")
    ap.add_argument("--note", default="", help="what else ran on the machine (printed with the results)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from gemmaforge.train.config import TrainConfig
    from gemmaforge.train.rl import rlhf
    from gemmaforge.util.machine import cpu_name

    config = TrainConfig.load(args.config)
    if args.steps:
        config = config.replace(train={"max_steps": args.steps})
    if args.report_only:
        previous = json.loads((args.out / "rl_demo.json").read_text())
        env, wall, cpu = previous["env"], previous["wall_s"], previous["cpu_s"]
        env["note"] = args.note or env.get("note", "")
        summary = json.loads((Path(config.out_dir) / "summary.json").read_text())
    else:
        shutil.rmtree(config.out_dir, ignore_errors=True)  # a benchmark starts afresh
        write_prompts(Path(config.rl.prompts), args.size, config.train.seed)
        load_before, started, cpu0 = os.getloadavg(), time.perf_counter(), cpu_seconds()
        summary = rlhf(config)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu0
        env = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "note": args.note,
               "load_before": load_before, "load_after": os.getloadavg()}
    rows = [json.loads(line) for line in (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "rollout/reward" in r]
    before, after = summary["held_out_before"], summary["held_out_after"]
    n = before["n"]
    # score_answer gives partial credit (e.g. 0.5 for "17" when the answer is 7): correct means a full score
    right_before, right_after = ([float(x >= 1.0) for x in h["rewards"]] for h in (before, after))
    test = paired(right_before, right_after)
    kl = [r["rollout/kl"] for r in rows]
    running = [sum(kl[max(0, i - SMOOTH + 1):i + 1]) / len(kl[max(0, i - SMOOTH + 1):i + 1]) for i in range(len(kl))]
    prompts = [json.loads(line) for line in Path(config.rl.prompts).read_text().splitlines()][-n:]
    changed = [{"question": p["entry"]["question"], "answer": p["entry"]["answer"], "before": b, "after": a,
                "right_before": rb, "right_after": ra}
               for p, b, a, rb, ra in zip(prompts, before["replies"], after["replies"], right_before, right_after)
               if rb != ra]
    report = {
        "task": {"dataset": "basic_arithmetic", **TASK, "prompt": prompt_text("Calculate {a} {op} {b}."),
                 "size": args.size},
        "config": config.to_dict(), "steps": summary["steps"], "wall_s": wall, "cpu_s": cpu,
        "train_s": summary["train_s"],
        "held_out": {"n": n, "before": sum(right_before) / n, "after": sum(right_after) / n,
                     "before_ci95": wilson(sum(right_before), n), "after_ci95": wilson(sum(right_after), n),
                     "mean_reward_before": before["mean_reward"], "mean_reward_after": after["mean_reward"],
                     **test},
        "kl": {"bound": args.kl_bound, "max_rollout_kl": max(kl), "last_rollout_kl": kl[-1],
               "mean_rollout_kl": sum(kl) / len(kl), "steps_over_bound": sum(x > args.kl_bound for x in kl),
               "smooth_steps": SMOOTH, "max_running_mean_kl": max(running),
               "within_bound": max(running) <= args.kl_bound, "kl_coef_first": rows[0]["rollout/kl_coef"],
               "kl_coef_last": rows[-1]["rollout/kl_coef"]},
        "interval_excludes_zero": test["diff_ci95"][0] > 0,
        "curve": [{k: r.get(k) for k in ("step", "rollout/reward", "rollout/kl", "rollout/kl_coef", "kl", "entropy",
                                         "rollout/length", "rollout/tok_s", "rollout/s", "step_s", "loss")}
                  for r in rows],
        "changed": changed,
        "env": env,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rl_demo.json").write_text(json.dumps(report, indent=2) + "\n")
    shutil.copyfile(summary["plot"], args.out / "rl_demo.png")
    (args.out / "rl_demo.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    h, k, c, e = r["held_out"], r["kl"], r["config"], r["env"]
    first, last = r["curve"][:5], r["curve"][-5:]
    mean = lambda rows, key: sum(x[key] for x in rows) / len(rows)  # noqa: E731
    mark = lambda ok: "right" if ok else "wrong"  # noqa: E731
    ex = "\n".join(f"| `{x['question']}` | {x['answer']} | `{x['before']!r}` ({mark(x['right_before'])}) | "
                   f"`{x['after']!r}` ({mark(x['right_after'])}) |" for x in r["changed"][:12])
    verdict = ("the interval excludes zero" if r["interval_excludes_zero"]
               else "the interval does NOT exclude zero: the goal is not met")
    rl = c["rl"]
    return (
        "# RL on a verifiable task: RLOO + LoRA on gemma3-270m, reasoning-gym arithmetic\n\n"
        f"`python benchmarks/rl_demo.py` with `configs/rl-arithmetic.toml`: {rl['algorithm'].upper()}, "
        f"k = {rl['k']}, {rl['prompts_per_step']} prompts a step, replies of up to {rl['max_new_tokens']} tokens at "
        f"T = {rl['temperature']}, KL ({rl['kl_estimator']}, in the reward) with an adaptive coefficient "
        f"(start {rl['kl_coef']}, target {rl['kl_target']} nats a reply, horizon {rl['kl_horizon']:g} rollouts), "
        f"LoRA r{c['lora']['rank']} on {', '.join(c['lora']['targets'])}, lr {c['optim']['lr']}; "
        f"{r['steps']} steps.\n\n"
        f"Time: {r['wall_s'] / 60:.1f} min wall, {r['cpu_s'] / 60:.1f} min of process CPU time, at "
        f"{e['threads']} thread(s), on {e.get('note') or 'a 2-core machine'} (load average "
        f"{e['load_before'][0]:.1f} before, {e['load_after'][0]:.1f} after). Training alone "
        f"{r['train_s'] / 60:.1f} min; the rest is loading and the two held-out evaluations.\n\n"
        f"Task: reasoning-gym `basic_arithmetic`, {r['task']['min_terms']} terms of {r['task']['min_digits']}-"
        f"{r['task']['max_digits']} digit(s), {' '.join(r['task']['operators'])}, asked to the pretrained model as "
        "a plain few-shot completion (`rl.prompt_format = \"plain\"`; in a chat turn it echoes the question):\n\n"
        f"```\n{r['task']['prompt']}\n```\n\n"
        "Reward: reasoning-gym's own `score_answer` on `extract_answer(reply)` (the reply's first bare-number "
        "line); a reply ends at its newline (`rl.stop = [\"\\n\"]`), else the base model goes on writing further "
        "sums.\n\n"
        f"## Held-out accuracy ({h['n']} prompts never trained on, greedy)\n\n"
        "| | accuracy (exact answers) | 95% interval (Wilson) |\n|---|---|---|\n"
        f"| before | {h['before']:.3f} | [{h['before_ci95'][0]:.3f}, {h['before_ci95'][1]:.3f}] |\n"
        f"| after | {h['after']:.3f} | [{h['after_ci95'][0]:.3f}, {h['after_ci95'][1]:.3f}] |\n\n"
        f"Paired on the same prompts: difference {h['diff']:+.3f}, bootstrap 95% interval "
        f"[{h['diff_ci95'][0]:+.3f}, {h['diff_ci95'][1]:+.3f}] — {verdict}. Prompts gained {h['gained']}, lost "
        f"{h['lost']}; exact McNemar p = {h['mcnemar_p']:.2g}.\n\n"
        "## Curve (`rl_demo.png`: reward, KL, β, loss)\n\n"
        f"Rollout reward (T = {rl['temperature']}) over the first 5 steps {mean(first, 'rollout/reward'):.3f}, "
        f"last 5 {mean(last, 'rollout/reward'):.3f}. KL to the starting policy (k1, summed over a reply, mean over a "
        f"step's rollouts): mean {k['mean_rollout_kl']:.3f} nats, last {k['last_rollout_kl']:.3f}. Stated bound "
        f"{k['bound']} nats on the running mean of {k['smooth_steps']} steps (one step's estimate, from 64 replies "
        f"of a few tokens, is noisy): at most {k['max_running_mean_kl']:.3f}, "
        f"{'held' if k['within_bound'] else 'EXCEEDED'}; single steps reached {k['max_rollout_kl']:.3f} "
        f"({k['steps_over_bound']} of {len(r['curve'])} steps over {k['bound']}). β went from "
        f"{k['kl_coef_first']:.4f} to {k['kl_coef_last']:.4f}. Rollout speed "
        f"{mean(r['curve'], 'rollout/tok_s'):.1f} tokens/s on average, "
        f"{mean(r['curve'], 'step_s'):.1f} s a step.\n\n![curves](rl_demo.png)\n\n"
        "## Held-out replies that changed (greedy; the first 12)\n\n"
        "| question | answer | before | after |\n|---|---|---|---|\n"
        f"{ex}\n\n"
        f"Mean reward (with score_answer's partial credit for a wrong number): {h['mean_reward_before']:.3f} before, "
        f"{h['mean_reward_after']:.3f} after. {e['cpu']}, torch {e['torch']}.\n")


if __name__ == "__main__":
    main()
