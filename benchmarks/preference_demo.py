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
Results are rewritten after every fold (a stopped run keeps the folds it finished).

    python benchmarks/preference_demo.py --hhh PATH/hhh_alignment [--folds 3] [--seq 256] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

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


def config(kind: str, out: Path, train: Path, args) -> TrainConfig:
    return TrainConfig.from_dict({
        "out_dir": str(out), "model": {"init_from": "gemma3-270m"},
        "data": {"train": str(train), "seq_len": args.seq, "seed": args.seed},
        "lora": {"targets": TARGETS, "rank": args.rank, "alpha": 2.0 * args.rank},
        "preference": {"val_fraction": 0.0, "beta": args.beta},
        "optim": {"lr": args.reward_lr if kind == "reward" else args.dpo_lr, "warmup_steps": 1,
                  "min_lr_ratio": 1.0, "weight_decay": 0.0},
        "train": {"max_steps": args.steps, "global_batch": args.batch, "micro_batch": args.batch, "device": "cpu",
                  "seed": args.seed},
        "eval": {"interval": 10 ** 6}, "checkpoint": {"interval": 10 ** 6, "keep": 1},
        "log": {"progress": True, "peak_tflops": 1.0}})


def run_fold(f: int, pairs: list[dict], kept: list[int], fold: list[int], items: torch.Tensor, base_lp: torch.Tensor,
             tok, args) -> dict:
    """Train both models on fold f's training pairs; the held-out rows' reward-model and DPO verdicts."""
    import gemmaforge as gf
    from gemmaforge.train.preference_run import dpo, load_reward_model, reward_train, score

    work = args.work / f"fold{f}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = [r for r, i in enumerate(kept) if fold[i] != f]
    held = [r for r, i in enumerate(kept) if fold[i] == f]
    picked = random.Random(args.seed + f).sample(rows, min(len(rows), args.steps * args.batch))
    train = work / "train.jsonl"
    train.write_text("".join(json.dumps(pairs[kept[r]]) + "\n" for r in picked))
    t0 = time.perf_counter()
    rs = reward_train(config("reward", work / "reward", train, args))
    rm = load_reward_model(work / "reward")
    ps = [pairs[kept[r]]["prompt"] for r in held]
    rewards = score(rm, tok, ps + ps, [pairs[kept[r]]["chosen"] for r in held] +
                    [pairs[kept[r]]["rejected"] for r in held], batch_size=args.micro)
    del rm
    reward_diff = torch.tensor(rewards[:len(held)]) - torch.tensor(rewards[len(held):])
    t1 = time.perf_counter()
    ds = dpo(config("dpo", work / "dpo", train, args))
    policy = gf.load_model(ds["model"])
    lp = logprobs(policy, items[held], args.micro)
    del policy
    implicit = args.beta * (lp - base_lp[held])
    t2 = time.perf_counter()
    shutil.rmtree(work / "reward" / "checkpoints", ignore_errors=True)
    shutil.rmtree(work / "dpo", ignore_errors=True)
    return {"held": held, "reward_diff": reward_diff.tolist(), "dpo_diff": (implicit[:, 0] - implicit[:, 1]).tolist(),
            "train_pairs": len(picked), "reward_train_loss": rs["train_loss"], "dpo_train_loss": ds["train_loss"],
            "reward_s": t1 - t0, "dpo_s": t2 - t1}


def report(args, pairs, kept, fold, items, base_lp, folds_done: list[dict], started: float, loads: list[float]) -> dict:
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
        trained = {"reward model (LoRA)": correct(torch.tensor([x for d in folds_done for x in d["reward_diff"]])),
                   "DPO implicit reward (LoRA)": correct(torch.tensor([x for d in folds_done for x in d["dpo_diff"]]))}
        trained.update({m: h[held] for m, h in methods.items()})
        out["held-out pairs of finished folds"] = {m: summarise(h, sub, args.seed) for m, h in trained.items()}
    return {"results": out,
            "folds": [{k: v for k, v in d.items() if k not in ("held", "reward_diff", "dpo_diff")}
                      | {"held_out": len(d["held"])} for d in folds_done],
            "data": {"pairs": len(pairs), "prompts": len(set(p["prompt"] for p in pairs)), "fit_seq": len(kept),
                     "too_long": len(pairs) - len(kept)},
            "settings": {k: getattr(args, k) for k in ("folds", "seq", "steps", "batch", "rank", "reward_lr", "dpo_lr",
                                                        "beta", "seed", "threads")},
            "folds_finished": len(folds_done), "wall_s": time.perf_counter() - started,
            "load_average": loads + [os.getloadavg()[0]], "torch": torch.__version__}


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
    lines += ["\n## Folds\n", "| fold | held out | trained pairs | reward loss | DPO loss | reward s | DPO s |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {i} | {d['held_out']} | {d['train_pairs']} | {d['reward_train_loss']:.3f} "
              f"| {d['dpo_train_loss']:.3f} | {d['reward_s']:.0f} | {d['dpo_s']:.0f} |"
              for i, d in enumerate(res["folds"])]
    la = res["load_average"]
    lines.append(f"\nWall {res['wall_s'] / 60:.1f} min, {s['threads']} thread, torch {res['torch']}, on a shared, busy "
                 f"2-core machine (1-min load average {min(la):.1f}–{max(la):.1f} during the run): absolute times are "
                 "not those of a quiet machine. AI-feedback pairs and the judge's win rate were not run.\n")
    (out / "preference_demo.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hhh", type=Path, default=SHIPPED_HHH, help="bigbench's hhh_alignment folder")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4, help="pairs a step")
    ap.add_argument("--micro", type=int, default=8, help="pairs a forward pass when scoring")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--reward-lr", type=float, default=5e-4)
    ap.add_argument("--dpo-lr", type=float, default=2e-4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/preference_demo"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import gemmaforge as gf
    from gemmaforge.train.preference_data import build_items, to_pair

    started, loads = time.perf_counter(), [os.getloadavg()[0]]
    pairs = load_pairs(args.hhh)
    tok = gf.load_tokenizer("gemma3-270m")
    items, _ = build_items(tok, [to_pair(p, f"pair {i}") for i, p in enumerate(pairs)], args.seq)
    kept = items[:, 0, 3, 0].tolist()
    items[:, :, 3] = torch.arange(len(items))[:, None, None]  # index items by row from here on
    fold = make_folds([p["prompt"] for p in pairs], args.folds, args.seed)
    print(f"{len(pairs)} pairs, {len(kept)} fit {args.seq} tokens; base model log-probs…", flush=True)
    base_lp = logprobs(gf.load_model("gemma3-270m"), items, args.micro)
    done: list[dict] = []
    write(report(args, pairs, kept, fold, items, base_lp, done, started, loads), args.out)
    for f in range(args.folds):
        print(f"fold {f + 1}/{args.folds}", flush=True)
        done.append(run_fold(f, pairs, kept, fold, items, base_lp, tok, args))
        loads.append(os.getloadavg()[0])
        res = report(args, pairs, kept, fold, items, base_lp, done, started, loads)
        write(res, args.out)
        print(json.dumps(res["results"], indent=1), flush=True)


if __name__ == "__main__":
    main()
