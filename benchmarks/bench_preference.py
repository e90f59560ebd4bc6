"""Reward-model and DPO training speed and memory: gemmaforge vs TRL (RewardTrainer / DPOTrainer + peft).

Both train gemma3-270m (gemmaforge loads the shipped GGUF; TRL loads the same weights exported with
gf.export_hf into transformers' Gemma) with the LoRA settings, learning rate and β of the shipped
configs/reward-lora.toml and configs/dpo-lora.toml (all seven projections, no dropout, float32,
AdamW, clipping 1.0, constant learning rate), on the same bigbench hhh_alignment pairs in the same
order, `--batch` pairs a step, none longer than `--seq` tokens. The reward model reads a scalar
head at the last real token (TRL: a sequence-classification head kept trainable beside LoRA);
DPO's reference log-probabilities are computed once before training on both sides (TRL:
`precompute_ref_log_probs=True`; gemmaforge always does), so a timed step is the policy's
forward and backward. Activation checkpointing per decoder layer is on for both (TRL's default;
`--no-checkpointing` turns it off on both). Each engine and task runs in its own subprocess (peak
RSS is the child's), the engines alternately for `--rounds` rounds (TRL, gemmaforge, TRL, ...) so
both see the same machine load; `--warmup` steps are not timed. Speed is the pairs' real
(non-padding) tokens per second.

    python benchmarks/bench_preference.py [--threads 2] [--steps 2] [--warmup 1] [--batch 2] [--seq 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

from side_by_side import InOrder, alternate, load_note, peak_rss_mb

from gemmaforge.rate.prefs import SHIPPED_HHH
from gemmaforge.util.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("reward", "dpo")


def shipped(task: str):
    from gemmaforge.train.config import TrainConfig

    return TrainConfig.load(ROOT / "configs" / ("reward-lora.toml" if task == "reward" else "dpo-lora.toml"))


def make_items(args):
    """Items [N, 2, 4, seq] of the first pairs (seeded order) that fit, as the library builds them."""
    import gemmaforge as gf
    from gemmaforge.rate.prefs import read_hhh
    from gemmaforge.train.preference_data import build_items, to_pair

    pairs = [to_pair({"prompt": r.prompt.text, "chosen": r.chosen, "rejected": r.rejected}, f"pair {i}")
             for i, r in enumerate(read_hhh(args.hhh))]
    random.Random(0).shuffle(pairs)
    items, _ = build_items(gf.load_tokenizer("gemma3-270m"), pairs, args.seq)
    items = items[:args.batch * (args.warmup + args.steps)]
    items[:, :, 3] = __import__("torch").arange(len(items))[:, None, None]
    return items


def gemmaforge_run(task: str, items, args) -> list[float]:
    import torch

    import gemmaforge as gf
    from gemmaforge.train.distributed import DistInfo
    from gemmaforge.train.loop import Trainer
    from gemmaforge.train.lora import LoraSettings, apply_lora
    from gemmaforge.train.modules import ModelWithHead
    from gemmaforge.train.preference import DpoObjective, RewardObjective, reference_logprobs

    c = shipped(task)
    gemma = gf.load_model("gemma3-270m")
    apply_lora(gemma, LoraSettings(tuple(c.lora.targets), c.lora.rank, c.lora.alpha))
    if task == "reward":
        model, objective = ModelWithHead(gemma, 1, "last"), RewardObjective(c.preference.margin)
    else:
        model = gemma
        objective = DpoObjective(reference_logprobs(gemma, items, args.batch), c.preference.beta, c.preference.loss)

    config = c.replace(
        out_dir=str(args.work / f"gf-{task}"),
        data={"seq_len": args.seq},
        optim={"lr": c.optim.lr, "warmup_steps": 0, "min_lr_ratio": 1.0, "weight_decay": 0.0},
        train={"max_steps": 1000, "global_batch": args.batch, "micro_batch": args.batch, "device": "cpu",
               "activation_checkpointing": args.checkpointing},
        log={"progress": False, "peak_tflops": 1.0})
    trainer = Trainer(model, objective, InOrder(items, args.batch), config,
                      DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu")))
    times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        trainer.train_step(step)
        times.append(time.perf_counter() - t0)
    return times


def sides(items, s: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for item in items:
        n = int(item[s, 1].sum())
        out.append((item[s, 0, :n].tolist(), item[s, 2, :n].tolist()))
    return out


def trl_run(task: str, items, args) -> list[float]:
    import datasets
    import peft
    import torch
    import transformers
    import trl
    from torch.utils.data import SequentialSampler

    c = shipped(task)
    times, started = [], []

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            started.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - started[-1])

    common = dict(output_dir=str(args.work / f"trl-{task}"), per_device_train_batch_size=args.batch,
                  max_steps=args.warmup + args.steps, learning_rate=c.optim.lr, lr_scheduler_type="constant",
                  weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", use_cpu=True, report_to=[],
                  save_strategy="no", logging_steps=1, dataloader_num_workers=0, bf16=False, fp16=False,
                  remove_unused_columns=False, gradient_checkpointing=args.checkpointing)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.work / "hf")
    lora = dict(r=c.lora.rank, lora_alpha=c.lora.alpha, lora_dropout=0.0, target_modules=list(c.lora.targets))
    chosen, rejected = sides(items, 0), sides(items, 1)
    if task == "reward":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(args.work / "hf", num_labels=1,
                                                                                dtype=torch.float32)
        model.config.pad_token_id = tokenizer.pad_token_id
        data = datasets.Dataset.from_list([{"chosen_ids": a, "rejected_ids": b}
                                           for (a, _), (b, _) in zip(chosen, rejected)])
        cls, config = trl.RewardTrainer, trl.RewardConfig(max_length=None, **common)
        peft_config = peft.LoraConfig(task_type="SEQ_CLS", **lora)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.work / "hf", dtype=torch.float32)
        rows = []
        for (a, am), (b, bm) in zip(chosen, rejected):
            start = am.index(1)  # the completion: the model turn's content and <end_of_turn>, as gemmaforge scores
            rows.append({"prompt_ids": a[:start], "chosen_ids": a[start:start + sum(am)],
                         "rejected_ids": b[start:start + sum(bm)]})
        data = datasets.Dataset.from_list(rows)
        cls = trl.DPOTrainer
        config = trl.DPOConfig(beta=c.preference.beta, loss_type=[c.preference.loss], max_length=None,
                               precompute_ref_log_probs=True, **common)
        peft_config = peft.LoraConfig(task_type="CAUSAL_LM", **lora)

    class KeepOrder(cls):
        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

        def _prepare_dataset(self, dataset, *a, **k):
            return dataset  # already token ids, the same as gemmaforge's

    KeepOrder(model=model, args=config, train_dataset=data, processing_class=tokenizer, peft_config=peft_config,
            callbacks=[Timer()]).train()
    return times


def child(engine: str, task: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    items = torch.load(args.work / "items.pt")
    times = (gemmaforge_run if engine == "gemmaforge" else trl_run)(task, items, args)
    timed = times[args.warmup:]
    tokens = int(items[args.warmup * args.batch:(args.warmup + args.steps) * args.batch, :, 1].sum())
    return {"tokens": tokens, "seconds": sum(timed), "step_s": timed, "warmup_s": times[:args.warmup],
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2, help="pairs a step")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each engine, alternating")
    ap.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                    help="no activation checkpointing on either side")
    ap.add_argument("--hhh", type=Path, default=SHIPPED_HHH, help="bigbench's hhh_alignment folder")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_preference"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return
    import torch

    import gemmaforge as gf

    args.work.mkdir(parents=True, exist_ok=True)
    torch.save(make_items(args), args.work / "items.pt")
    if not (args.work / "hf" / "config.json").exists():
        gf.export_hf(gf.load_model("gemma3-270m"), args.work / "hf", tokenizer=gf.load_tokenizer("gemma3-270m"),
                     overwrite=True)
    results, loads = {}, []
    for task in TASKS:
        results[task], task_loads = alternate(
            {e: [sys.executable, __file__, "--child", e, task, *sys.argv[1:]] for e in ("trl", "gemmaforge")},
            args.rounds)
        loads += task_loads
    import peft
    import transformers
    import trl

    for r in results.values():
        r["speedup"] = r["gemmaforge"]["tokens_per_s"] / r["trl"]["tokens_per_s"]
        r["memory_ratio"] = r["gemmaforge"]["peak_rss_mb"] / r["trl"]["peak_rss_mb"]
        r["goal_met"] = r["speedup"] >= 1.5 and r["memory_ratio"] <= 1.0
    report = {"results": results,
              "settings": {k: getattr(args, k) for k in ("steps", "warmup", "batch", "seq", "threads", "rounds",
                                                         "checkpointing")},
              "env": {"cpu": cpu_name(), "python": platform.python_version(), "torch": torch.__version__,
                      "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__,
                      "load_average": loads}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_preference.json").write_text(json.dumps(report, indent=2) + "\n")
    e, s = report["env"], report["settings"]
    lines = ["# Reward model and DPO with LoRA: gemmaforge vs TRL RewardTrainer / DPOTrainer + peft "
             "(gemma3-270m, float32)\n",
             f"`python benchmarks/bench_preference.py --threads {s['threads']}` — {s['batch']} hhh_alignment pairs a "
             f"step (both sides), up to {s['seq']} tokens, LoRA and optimiser settings of configs/reward-lora.toml "
             f"and configs/dpo-lora.toml, activation checkpointing {'on' if s['checkpointing'] else 'off'} for both, "
             f"{s['steps']} timed steps after {s['warmup']} warm-up, {s['threads']} thread(s), {s['rounds']} "
             "alternating rounds of each engine in its own process.\n",
             "| task | TRL tokens/s | gemmaforge tokens/s | speed-up | TRL peak RSS (MB) | "
             "gemmaforge peak RSS (MB) | memory ratio | goal (≥1.5x, ≤1x memory) |",
             "|---|---|---|---|---|---|---|---|"]
    for task, r in results.items():
        lines.append(f"| {task} | {r['trl']['tokens_per_s']:.1f} | {r['gemmaforge']['tokens_per_s']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['trl']['peak_rss_mb']:.0f} | {r['gemmaforge']['peak_rss_mb']:.0f} | "
                     f"{r['memory_ratio']:.2f}x | {'met' if r['goal_met'] else 'not met'} |")
    lines.append(f"\n{e['cpu']}, torch {e['torch']}, transformers {e['transformers']}, TRL {e['trl']}, "
                 f"peft {e['peft']}. {load_note(loads, s['threads'])}\n")
    (args.out / "bench_preference.md").write_text("\n".join(lines))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
