"""LoRA SFT speed and memory: gemmaforge vs TRL's SFTTrainer (+ peft) on the real Gemma 3 270M.

Both fine-tune gemma3-270m (gemmaforge loads the shipped GGUF; TRL loads the same weights exported
with gf.export_hf) with LoRA rank 16, alpha 32, no dropout, on all seven projections, float32,
AdamW lr 2e-4, clipping 1.0, on the same conversations of the embedded default SFT set, in the
same order, one conversation per row (no packing on either side; the first conversations of
at most `--seq` tokens), `--batch` rows a step, loss on model turns only, activation
checkpointing per decoder layer on both (TRL's default; `--no-checkpointing` turns it off on
both). Each engine runs in its own subprocess (peak RSS is the child's), alternately for
`--rounds` rounds (TRL, gemmaforge, TRL, gemmaforge, ...) so both see the same machine load;
`--warmup` steps are not timed. Speed is trained-on rows' real (non-padding) tokens per second.

    python benchmarks/bench_sft.py [--threads 2] [--steps 3] [--warmup 1] [--batch 4] [--seq 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from side_by_side import InOrder, alternate, load_note, peak_rss_mb

from gemmaforge.util.machine import cpu_name

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA, LR = 16, 32.0, 2e-4


def examples(n: int, seq: int) -> list[tuple[list[int], list[int]]]:
    import gemmaforge as gf
    from gemmaforge.train.sft import DEFAULT_SET
    from gemmaforge.train.sft_data import read_examples

    tok = gf.load_tokenizer("gemma3-270m")
    fitting = [(e.ids, e.mask) for e in read_examples(DEFAULT_SET / "train.jsonl.gz", tok) if len(e.ids) <= seq + 1]
    return fitting[:n]


def gemmaforge_run(data, args) -> list[float]:
    import torch

    import gemmaforge as gf
    from gemmaforge.train.config import TrainConfig
    from gemmaforge.train.distributed import DistInfo
    from gemmaforge.train.loop import Trainer
    from gemmaforge.train.lora import LoraSettings, apply_lora
    from gemmaforge.train.sft import SftObjective
    from gemmaforge.train.sft_data import Example, pack

    rows = torch.cat([pack([Example(i, m, "")], args.seq, packed=False)[0] for i, m in data])
    model = gf.load_model("gemma3-270m")
    apply_lora(model, LoraSettings(tuple(TARGETS), RANK, ALPHA))

    config = TrainConfig.from_dict({
        "out_dir": str(args.work / "gf"), "data": {"seq_len": args.seq},
        "optim": {"lr": LR, "warmup_steps": 0, "min_lr_ratio": 1.0, "weight_decay": 0.0},
        "train": {"max_steps": 1000, "global_batch": args.batch, "micro_batch": args.batch,
                  "activation_checkpointing": args.checkpointing},
        "log": {"progress": False, "peak_tflops": 1.0}})
    trainer = Trainer(model, SftObjective(), InOrder(rows, args.batch), config,
                      DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu")))
    times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        trainer.train_step(step)
        times.append(time.perf_counter() - t0)
    return times[args.warmup:]


def trl_run(data, args) -> list[float]:
    import datasets
    import peft
    import torch
    import transformers
    import trl
    from torch.utils.data import SequentialSampler

    times, started = [], []

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            started.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - started[-1])

    class KeepOrder(trl.SFTTrainer):
        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

    model = transformers.AutoModelForCausalLM.from_pretrained(args.work / "hf", dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.work / "hf")
    dataset = datasets.Dataset.from_list([{"input_ids": i, "completion_mask": m} for i, m in data])
    config = trl.SFTConfig(output_dir=str(args.work / "trl"), per_device_train_batch_size=args.batch,
                           max_steps=args.warmup + args.steps, learning_rate=LR, lr_scheduler_type="constant",
                           weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", use_cpu=True, report_to=[],
                           save_strategy="no", logging_steps=1, packing=False, max_length=None,
                           completion_only_loss=True, dataloader_num_workers=0,
                           gradient_checkpointing=args.checkpointing)
    lora = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    KeepOrder(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
            callbacks=[Timer()]).train()
    return times[args.warmup:]


def child(engine: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    data = json.loads((args.work / "data.json").read_text())
    times = (gemmaforge_run if engine == "gemmaforge" else trl_run)(data, args)
    tokens = sum(len(i) - 1 for i, _ in data[args.warmup * args.batch:(args.warmup + args.steps) * args.batch])
    return {"tokens": tokens, "seconds": sum(times), "step_s": times, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each engine, alternating")
    ap.add_argument("--no-checkpointing", dest="checkpointing", action="store_false",
                    help="no activation checkpointing on either side")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_sft"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(child(args.engine, args)))
        return
    import gemmaforge as gf

    args.work.mkdir(parents=True, exist_ok=True)
    data = examples(args.batch * (args.warmup + args.steps), args.seq)
    (args.work / "data.json").write_text(json.dumps(data))
    if not (args.work / "hf" / "config.json").exists():
        gf.export_hf(gf.load_model("gemma3-270m"), args.work / "hf", tokenizer=gf.load_tokenizer("gemma3-270m"),
                     overwrite=True)
    results, loads = alternate({e: [sys.executable, __file__, "--engine", e, *sys.argv[1:]]
                                for e in ("trl", "gemmaforge")}, args.rounds)
    import peft
    import torch
    import transformers
    import trl

    report = {"results": results, "speedup": results["gemmaforge"]["tokens_per_s"] / results["trl"]["tokens_per_s"],
              "memory_ratio": results["gemmaforge"]["peak_rss_mb"] / results["trl"]["peak_rss_mb"],
              "settings": {k: getattr(args, k) for k in ("steps", "warmup", "batch", "seq", "threads", "rounds",
                                                         "checkpointing")},
              "env": {"cpu": cpu_name(), "threads": args.threads, "python": platform.python_version(),
                      "torch": torch.__version__, "transformers": transformers.__version__,
                      "trl": trl.__version__, "peft": peft.__version__, "load_average": loads}}
    report["goal_met"] = report["speedup"] >= 1.5 and report["memory_ratio"] <= 1.0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sft.json").write_text(json.dumps(report, indent=2) + "\n")
    r, e = results, report["env"]
    (args.out / "sft.md").write_text(
        "# LoRA SFT: gemmaforge vs TRL SFTTrainer + peft (gemma3-270m, float32)\n\n"
        f"`python benchmarks/bench_sft.py --threads {args.threads}` — {args.batch} rows x up to {args.seq} tokens "
        f"a step, LoRA r{RANK} on {len(TARGETS)} projections, activation checkpointing "
        f"{'on' if args.checkpointing else 'off'} for both, {args.steps} timed steps after {args.warmup} warm-up, "
        f"{args.rounds} alternating rounds of each engine in its own process.\n\n"
        "| | TRL | gemmaforge | ratio |\n|---|---|---|---|\n"
        f"| tokens/s | {r['trl']['tokens_per_s']:.1f} | {r['gemmaforge']['tokens_per_s']:.1f} | "
        f"{report['speedup']:.2f}x |\n"
        f"| peak RSS (MB) | {r['trl']['peak_rss_mb']:.0f} | {r['gemmaforge']['peak_rss_mb']:.0f} | "
        f"{report['memory_ratio']:.2f}x |\n\n"
        f"Goal (≥ 1.5x tokens/s at ≤ 1x memory): {'met' if report['goal_met'] else 'not met'}.\n\n"
        f"{e['cpu']}, {e['threads']} threads, torch {e['torch']}, transformers {e['transformers']}, "
        f"TRL {e['trl']}, peft {e['peft']}. {load_note(loads, args.threads)}\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
