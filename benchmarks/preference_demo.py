"""Preference learning on real human pairs: reward model and DPO from gemma3-270m + LoRA, k-fold.

Data: BIG-bench's `hhh_alignment` (Anthropic's helpful/honest/harmless pairs, 221 pairs on 102
prompts), read with `gemmaforge.rate.prefs.read_hhh` from the copy that ships with gemmaforge
(`gemmaforge/rate/hhh_alignment`, from the PyPI sdist `bigbench==1.0.0`). Pairs whose
longer side does not fit `--seq` tokens are left out (counted in the results).

Folds are made of whole prompts (a prompt's pairs never straddle train and held-out). In each fold
the library trains, through its own Trainer (`preference_run.reward_train` / `preference_run.dpo`),
a LoRA reward model and a LoRA DPO policy on `--steps` x `--batch` pairs drawn from the training
folds, and the held-out pairs are scored:

- reward model: `score(load_reward_model(run), …)`, chosen wins if its reward is higher;
- DPO: implicit reward β·(log π(y|x) − log π_ref(y|x)), π_ref the base model;
- baselines, no training: longer (or shorter) response wins, in completion tokens; the base model's
  log p(response | prompt), summed and averaged per token.

Every pair is held out exactly once, so accuracies pool over all folds; the 95% interval is a
bootstrap over prompts (pairs of one prompt are resampled together). Ties count one half.

AI feedback (`--ai-pairs N`, 0 to skip; see ai_feedback.py): N prompts from gemmaforge's own SFT
set (not hhh_alignment), two sampled answers of the base model each, compared by the judge in both
orders; verdicts that flip with the order are ties and are dropped. Each fold then trains a second
reward model and DPO policy on its hhh training pairs plus every decided AI pair (steps raised so
each pair is seen once, as in the first arm) and scores them on the same held-out pairs. If the
judge decides no pair, the second arm is not trained and the report says so.

Judge win rate (head_to_head.py): in each fold, greedy replies of the DPO policy and of the base
model to the fold's held-out prompts, judged DPO as A against base as B in both orders (ties one
half), pooled over folds with a Wilson 95% interval and the position-flip rate. The judge is
gemma3-270m itself unless `--judge` names another model or an OpenAI-compatible endpoint
(`--judge http://host:port/v1 --judge-model NAME`).
Results are rewritten after every fold (a stopped run keeps the folds it finished).

    python benchmarks/preference_demo.py --hhh PATH/hhh_alignment [--folds 3] [--seq 256] [--steps 4] [--ai-pairs 16]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from head_to_head import pooled, replies, tally, win_rate

from gemmaforge.judge import JudgeItem, judge_name
from gemmaforge.rate.prefs import SHIPPED_HHH
from gemmaforge.train.config import TrainConfig

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_pairs(path: Path) -> list[dict]:
    from gemmaforge.rate.prefs import read_hhh

    return [{"prompt": r.prompt.text, "chosen": r.chosen, "rejected": r.rejected} for r in read_hhh(path)]


def make_folds(prompts: list[str], k: int, seed: int) -> list[int]:
    """A fold per pair: whole prompts, shuffled, each to the fold with the fewest pairs so far."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p, []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    sizes, fold = [0] * k, [0] * len(prompts)
    for members in sorted(order, key=len, reverse=True):
        f = sizes.index(min(sizes))
        sizes[f] += len(members)
        for i in members:
            fold[i] = f
    return fold


def logprobs(model, items: torch.Tensor, micro: int) -> torch.Tensor:
    """[N, 2] summed completion log-probs of `items` (in their order), shortest first to pad little."""
    from tqdm import tqdm

    from gemmaforge.train.preference import reference_logprobs

    order = items[:, :, 1].sum(-1).max(-1).values.argsort()
    out = torch.zeros(len(items), 2)
    for i in tqdm(range(0, len(items), micro), desc="log-probs", leave=False):
        rows = order[i:i + micro]
        got = reference_logprobs(model, items[rows], micro)
        out[rows] = got[items[rows, 0, 3, 0]]
    return out


def correct(diff: torch.Tensor) -> torch.Tensor:
    """1 where chosen wins, 0 where it loses, 0.5 on a tie."""
    return (diff > 0).float() + 0.5 * (diff == 0).float()


def summarise(hits: torch.Tensor, groups: list[str], seed: int, n_boot: int = 2000) -> dict:
    """Accuracy and its 95% bootstrap interval over prompts."""
    by_prompt: dict[str, list[float]] = {}
    for h, g in zip(hits.tolist(), groups):
        by_prompt.setdefault(g, []).append(h)
    blocks = list(by_prompt.values())
    rng = random.Random(seed)
    stats = []
    for _ in range(n_boot):
        draw = [blocks[rng.randrange(len(blocks))] for _ in blocks]
        stats.append(sum(map(sum, draw)) / sum(map(len, draw)))
    stats.sort()
    return {"accuracy": float(hits.mean()), "ci95": [stats[int(0.025 * n_boot)], stats[int(0.975 * n_boot) - 1]],
            "pairs": len(hits)}


def config(kind: str, out: Path, train: Path, steps: int, args) -> TrainConfig:
    return TrainConfig.from_dict({
        "out_dir": str(out), "model": {"init_from": "gemma3-270m"},
        "data": {"train": str(train), "seq_len": args.seq, "seed": args.seed},
        "lora": {"targets": TARGETS, "rank": args.rank, "alpha": 2.0 * args.rank},
        "preference": {"val_fraction": 0.0, "beta": args.beta},
        "optim": {"lr": args.reward_lr if kind == "reward" else args.dpo_lr, "warmup_steps": 1,
                  "min_lr_ratio": 1.0, "weight_decay": 0.0},
        "train": {"max_steps": steps, "global_batch": args.batch, "micro_batch": args.batch, "device": "cpu",
                  "seed": args.seed},
        "eval": {"interval": 10 ** 6}, "checkpoint": {"interval": 10 ** 6, "keep": 1},
        "log": {"progress": True, "peak_tflops": 1.0}})


def train_arm(work: Path, train_rows: list[dict], steps: int, held: list[int], held_pairs: list[dict],
              items: torch.Tensor, base_lp: torch.Tensor, tok, args, reply_prompts: Sequence[str] = ()) -> dict:
    """Reward model and DPO policy on `train_rows`; the held-out rows' (`held`, their pairs
    `held_pairs`) verdicts of both, and the policy's greedy replies to `reply_prompts`."""
    import gemmaforge as gf
    from gemmaforge.train.preference_run import dpo, load_reward_model, reward_train, score

    work.mkdir(parents=True)
    train = work / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    t0 = time.perf_counter()
    rs = reward_train(config("reward", work / "reward", train, steps, args))
    rm = load_reward_model(work / "reward")
    ps = [p["prompt"] for p in held_pairs]
    rewards = score(rm, tok, ps + ps, [p["chosen"] for p in held_pairs] + [p["rejected"] for p in held_pairs],
                    batch_size=args.micro)
    del rm
    reward_diff = torch.tensor(rewards[:len(held)]) - torch.tensor(rewards[len(held):])
    t1 = time.perf_counter()
    ds = dpo(config("dpo", work / "dpo", train, steps, args))
    policy = gf.load_model(ds["model"])
    lp = logprobs(policy, items[held], args.micro)
    implicit = args.beta * (lp - base_lp[held])
    t2 = time.perf_counter()
    said = [r[0] for r in replies(policy, tok, list(reply_prompts), args.reply_tokens, args.micro)]
    del policy
    shutil.rmtree(work / "reward" / "checkpoints", ignore_errors=True)
    shutil.rmtree(work / "dpo", ignore_errors=True)
    return {"reward_diff": reward_diff.tolist(), "dpo_diff": (implicit[:, 0] - implicit[:, 1]).tolist(),
            "train_pairs": len(train_rows), "steps": steps, "reward_train_loss": rs["train_loss"],
            "dpo_train_loss": ds["train_loss"], "reward_s": t1 - t0, "dpo_s": t2 - t1,
            "replies": said, "replies_s": time.perf_counter() - t2}


def run_fold(f: int, pairs: list[dict], kept: list[int], fold: list[int], items: torch.Tensor, base_lp: torch.Tensor,
             tok, judge, base_replies: dict[str, str], ai_rows: list[dict], args) -> dict:
    """Fold f: both arms trained on its training pairs (the second with the AI pairs added), scored
    on its held-out pairs, and the first arm's DPO policy judged against the base model."""
    work = args.work / f"fold{f}"
    shutil.rmtree(work, ignore_errors=True)
    rows = [r for r, i in enumerate(kept) if fold[i] != f]
    held = [r for r, i in enumerate(kept) if fold[i] == f]
    drawn = random.Random(args.seed + f).sample(rows, min(len(rows), args.steps * args.batch))
    picked = [pairs[kept[r]] for r in drawn]
    held_pairs = [pairs[kept[r]] for r in held]
    prompts = list(dict.fromkeys(p["prompt"] for p in held_pairs))
    out = {"held": held, **train_arm(work / "hhh", picked, args.steps, held, held_pairs, items, base_lp, tok, args,
                                     prompts)}
    t0 = time.perf_counter()
    out["win"] = tally(judge, [JudgeItem(p, d, base_replies[p]) for p, d in zip(prompts, out.pop("replies"))])
    out["judge_s"] = time.perf_counter() - t0
    if ai_rows:
        mixed = picked + ai_rows
        random.Random(args.seed + f).shuffle(mixed)
        ai = train_arm(work / "ai", mixed, math.ceil(len(mixed) / args.batch), held, held_pairs, items, base_lp,
                       tok, args)
        out["ai"] = {k: v for k, v in ai.items() if k not in ("replies", "replies_s")}
    return out


def report(args, pairs, kept, fold, items, base_lp, folds_done: list[dict], ai: dict | None, judge: str,
           setup_s: dict[str, float], started: float, loads: list[float]) -> dict:
    groups = [pairs[i]["prompt"] for i in kept]
    n_tok = items[:, :, 2].sum(-1).float()  # completion tokens (response + <end_of_turn>) of each side
    longer = correct(n_tok[:, 0] - n_tok[:, 1])
    methods = {
        "length: longer wins": longer,
        "length: shorter wins": correct(n_tok[:, 1] - n_tok[:, 0]),
        "base log p, sum": correct(base_lp[:, 0] - base_lp[:, 1]),
        "base log p, mean per token": correct(base_lp[:, 0] / n_tok[:, 0] - base_lp[:, 1] / n_tok[:, 1]),
    }
    held = [r for d in folds_done for r in d["held"]]
    out = {"all pairs (no training)": {m: summarise(h, groups, args.seed) for m, h in methods.items()}}
    if held:
        sub = [groups[r] for r in held]
        verdicts = lambda arms, key: correct(torch.tensor([x for d in arms for x in d[key]]))  # noqa: E731
        trained = {"reward model (LoRA)": verdicts(folds_done, "reward_diff")}
        with_ai = [d["ai"] for d in folds_done if "ai" in d]
        if len(with_ai) == len(folds_done):
            trained["reward model (LoRA) + AI pairs"] = verdicts(with_ai, "reward_diff")
        trained["DPO implicit reward (LoRA)"] = verdicts(folds_done, "dpo_diff")
        if len(with_ai) == len(folds_done):
            trained["DPO implicit reward (LoRA) + AI pairs"] = verdicts(with_ai, "dpo_diff")
        trained.update({m: h[held] for m, h in methods.items()})
        out["held-out pairs of finished folds"] = {m: summarise(h, sub, args.seed) for m, h in trained.items()}
    drop = ("held", "reward_diff", "dpo_diff", "ai")
    return {"results": out,
            "judge_win_rate": win_rate(pooled([d["win"] for d in folds_done]), judge) if folds_done else None,
            "ai_feedback": ai,
            "folds": [{k: v for k, v in d.items() if k not in drop} | {"held_out": len(d["held"])}
                      | ({"ai": {k: v for k, v in d["ai"].items() if k not in drop}} if "ai" in d else {})
                      for d in folds_done],
            "data": {"pairs": len(pairs), "prompts": len(set(p["prompt"] for p in pairs)), "fit_seq": len(kept),
                     "too_long": len(pairs) - len(kept)},
            "settings": {k: getattr(args, k) for k in ("folds", "seq", "steps", "batch", "rank", "reward_lr", "dpo_lr",
                                                        "beta", "seed", "threads", "ai_pairs", "ai_tokens",
                                                        "reply_tokens", "judge", "judge_model")},
            "folds_finished": len(folds_done), "setup_s": setup_s, "wall_s": time.perf_counter() - started,
            "load_average": loads + [os.getloadavg()[0]], "torch": torch.__version__}


def pct_ci(rate: float | None, ci: list[float]) -> str:
    return "n/a" if rate is None else f"{rate:.3f} ({ci[0]:.3f}–{ci[1]:.3f})"


def ai_lines(ai: dict | None, s: dict) -> list[str]:
    """The AI-feedback section: what the judge decided, and whether the second arm was trained."""
    if ai is None:
        return ["Not run (`--ai-pairs 0`)."]
    lines = [f"{ai['prompts']} prompts from `{ai['source']}` (gemmaforge's SFT set, not hhh_alignment), two "
             f"answers each from gemma3-270m sampled at temperature {ai['temperature']} (at most "
             f"{ai['max_new_tokens']} tokens): {ai['responses']} responses, {ai['identical_skipped']} prompt(s) with "
             f"two identical answers left unpaired, {ai['judged']} pairs judged by `{ai['judge']}` in both orders. "
             f"Decided: {ai['decided']}. Ties, dropped: {ai['ties']} ({ai['position_flipped']} of them verdicts that "
             f"flipped with the order). {ai['fit_seq']} decided pairs fit {s['seq']} tokens."]
    if not ai["trained"]:
        why = (f"the judge decided none of the {ai['judged']} pairs (all ties, {ai['position_flipped']} of them "
               "position flips)" if not ai["decided"] else f"none of the {ai['decided']} decided pairs fit {s['seq']} "
               "tokens")
        lines.append(f"\n**No AI-feedback training: {why}.** The second reward model and DPO policy were not "
                     "trained, and the table above has no \"+ AI pairs\" rows.")
    else:
        lines.append(f"\nEach fold's second reward model and DPO policy trained on its hhh training pairs plus these "
                     f"{ai['fit_seq']} AI pairs, at {s['batch']} pairs a step, each pair once (the \"+ AI pairs\" rows "
                     "above, same held-out pairs).")
    return lines


def write(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "preference_demo.json").write_text(json.dumps(res, indent=2) + "\n")
    s = res["settings"]
    lines = ["# Preference learning on hhh_alignment: gemma3-270m + LoRA, k-fold (benchmarks/preference_demo.py)\n",
             f"{res['data']['pairs']} pairs on {res['data']['prompts']} prompts; {res['data']['fit_seq']} fit "
             f"{s['seq']} tokens ({res['data']['too_long']} longer ones left out). {s['folds']} folds by prompt, "
             f"{res['folds_finished']} finished. Each fold: {s['steps']} steps x {s['batch']} pairs, LoRA r{s['rank']} "
             f"on 7 projections, reward lr {s['reward_lr']}, DPO lr {s['dpo_lr']} β {s['beta']}. "
             "Accuracy = chosen preferred (ties ½); 95% interval: bootstrap over prompts.\n"]
    for title, table in res["results"].items():
        lines += [f"\n## {title}\n", "| method | accuracy | 95% interval | pairs |", "|---|---|---|---|"]
        lines += [f"| {m} | {v['accuracy']:.3f} | {v['ci95'][0]:.3f}–{v['ci95'][1]:.3f} | {v['pairs']} |"
                  for m, v in table.items()]
    lines += ["\n## AI-feedback pairs\n", *ai_lines(res["ai_feedback"], s)]
    w = res["judge_win_rate"]
    lines.append("\n## Judge win rate: DPO policy against the base model, held-out prompts\n")
    if w:
        lines += [f"Greedy replies (at most {s['reply_tokens']} tokens) of each fold's DPO policy (A) and of the base "
                  f"model (B) to the fold's held-out prompts, judged by `{w['judge']}` in both orders; ties count ½, "
                  "pooled over folds, Wilson 95% intervals.\n",
                  "| prompts | DPO wins | base wins | ties | DPO win rate | position-flip rate |",
                  "|---|---|---|---|---|---|",
                  f"| {w['pairs']} | {w['wins']} | {w['losses']} | {w['ties']} | "
                  f"{pct_ci(w['win_rate'], w['win_rate_ci95'])} | "
                  f"{pct_ci(w['position_flip_rate'], w['position_flip_rate_ci95'])} |"]
    else:
        lines.append("No fold finished.")
    lines += ["\n## Folds\n", "| fold | held out | trained pairs | reward loss | DPO loss | reward s | DPO s "
              "| replies s | judge s | DPO vs base (W/L/T) |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {i} | {d['held_out']} | {d['train_pairs']} | {d['reward_train_loss']:.3f} "
              f"| {d['dpo_train_loss']:.3f} | {d['reward_s']:.0f} | {d['dpo_s']:.0f} | {d['replies_s']:.0f} "
              f"| {d['judge_s']:.0f} | {d['win']['wins']}/{d['win']['losses']}/{d['win']['ties']} |"
              for i, d in enumerate(res["folds"])]
    if any("ai" in d for d in res["folds"]):
        lines += ["\nWith AI pairs:\n", "| fold | trained pairs | steps | reward loss | DPO loss | reward s | DPO s |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {i} | {a['train_pairs']} | {a['steps']} | {a['reward_train_loss']:.3f} | "
                  f"{a['dpo_train_loss']:.3f} | {a['reward_s']:.0f} | {a['dpo_s']:.0f} |"
                  for i, a in ((i, d["ai"]) for i, d in enumerate(res["folds"]) if "ai" in d)]
    la, su = res["load_average"], res["setup_s"]
    lines.append(f"\nBefore the folds: base log-probs {su['base_logprobs']:.0f} s, base replies "
                 f"{su['base_replies']:.0f} s, AI-feedback pairs {su['ai_pairs']:.0f} s. Wall {res['wall_s'] / 60:.1f} "
                 f"min, {s['threads']} thread(s), torch {res['torch']}, 1-min load "
                 f"average {min(la):.1f}–{max(la):.1f} during the run (on a shared, busy machine absolute times are "
                 "not those of a quiet one).\n")
    (out / "preference_demo.md").write_text("\n".join(lines))


def make_ai_pairs(args, tok, judge) -> tuple[list[dict], dict | None]:
    """The decided AI-feedback pairs that fit `--seq` tokens, and the counts for the report."""
    from ai_feedback import ai_pairs

    from gemmaforge.train.preference_data import build_items, to_pair

    if not args.ai_pairs:
        return [], None
    store = args.work / "ai_feedback.sqlite"
    store.unlink(missing_ok=True)  # the counts are this run's
    rows, stats = ai_pairs(store, "gemma3-270m", judge, tok, args.ai_pairs, args.seq, args.ai_tokens, args.seed,
                           args.micro)
    if rows:
        items, _ = build_items(tok, [to_pair(r, f"AI pair {i}") for i, r in enumerate(rows)], args.seq)
        rows = [rows[i] for i in items[:, 0, 3, 0].tolist()]
    return rows, stats | {"judge": judge_name(judge), "fit_seq": len(rows), "trained": bool(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hhh", type=Path, default=SHIPPED_HHH, help="bigbench's hhh_alignment folder")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4, help="pairs a step")
    ap.add_argument("--micro", type=int, default=8, help="pairs a scoring forward; prompts a generation batch")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--reward-lr", type=float, default=5e-4)
    ap.add_argument("--dpo-lr", type=float, default=2e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--ai-pairs", type=int, default=16, help="AI-feedback prompts (two sampled answers each); 0: none")
    ap.add_argument("--ai-tokens", type=int, default=96, help="most tokens of a sampled AI-feedback answer")
    ap.add_argument("--reply-tokens", type=int, default=128, help="most tokens of a judged greedy reply")
    ap.add_argument("--judge", default="gemma3-270m", help="a model source or an OpenAI-compatible endpoint URL")
    ap.add_argument("--judge-model", default=None, help="the endpoint's model name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/preference_demo"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()
    if args.ai_pairs < 0 or min(args.ai_tokens, args.reply_tokens) < 1 or args.ai_tokens + 8 > args.seq:
        ap.error(f"--ai-pairs must be >= 0 and --ai-tokens, --reply-tokens >= 1, with --ai-tokens + 8 <= --seq "
                 f"(got {args.ai_pairs}, {args.ai_tokens}, {args.reply_tokens}, --seq {args.seq})")
    torch.set_num_threads(args.threads)
    import gemmaforge as gf
    from gemmaforge.judge import load_judge
    from gemmaforge.train.preference_data import build_items, to_pair

    started, loads = time.perf_counter(), [os.getloadavg()[0]]
    pairs = load_pairs(args.hhh)
    tok = gf.load_tokenizer("gemma3-270m")
    judge = load_judge(args.judge, model_name=args.judge_model, progress=True)
    items, _ = build_items(tok, [to_pair(p, f"pair {i}") for i, p in enumerate(pairs)], args.seq)
    kept = items[:, 0, 3, 0].tolist()
    items[:, :, 3] = torch.arange(len(items))[:, None, None]  # index items by row from here on
    fold = make_folds([p["prompt"] for p in pairs], args.folds, args.seed)
    print(f"{len(pairs)} pairs, {len(kept)} fit {args.seq} tokens; base model log-probs and replies…", flush=True)
    setup_s, t0 = {}, time.perf_counter()
    base = gf.load_model("gemma3-270m")
    base_lp = logprobs(base, items, args.micro)
    setup_s["base_logprobs"], t0 = time.perf_counter() - t0, time.perf_counter()
    prompts = list(dict.fromkeys(pairs[i]["prompt"] for i in kept))
    base_replies = {p: r[0] for p, r in zip(prompts, replies(base, tok, prompts, args.reply_tokens, args.micro))}
    del base
    setup_s["base_replies"], t0 = time.perf_counter() - t0, time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    ai_rows, ai = make_ai_pairs(args, tok, judge)
    setup_s["ai_pairs"] = time.perf_counter() - t0
    done: list[dict] = []

    def current() -> dict:
        return report(args, pairs, kept, fold, items, base_lp, done, ai, judge_name(judge), setup_s, started, loads)

    write(current(), args.out)
    for f in range(args.folds):
        print(f"fold {f + 1}/{args.folds}", flush=True)
        done.append(run_fold(f, pairs, kept, fold, items, base_lp, tok, judge, base_replies, ai_rows, args))
        loads.append(os.getloadavg()[0])
        res = current()
        write(res, args.out)
        print(json.dumps(res["results"], indent=1) + "\n" + json.dumps(res["judge_win_rate"]), flush=True)


if __name__ == "__main__":
    main()
