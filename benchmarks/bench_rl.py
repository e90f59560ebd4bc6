"""RL speed and memory: gemmaforge's rlhf vs TRL's RLOOTrainer (+ peft) on the real Gemma 3 270M.

One RLOO config on both sides: gemma3-270m (gemmaforge loads the shipped GGUF; TRL loads the same
weights exported with gf.export_hf), LoRA rank 16, alpha 32, no dropout on q/k/v/o, float32,
`--prompts` reasoning-gym arithmetic prompts a step (the chat-rendered question, the same token
ids on both sides) x k = `--k` samples at temperature 1 (no top-k/top-p), replies of up to
`--new` tokens ending at <eos> or <end_of_turn>, KL coefficient 0.05 to the base (adapters off),
one optimisation pass, all rollouts in one micro-batch, the reward being the same Python function
(reasoning-gym's `score_answer`). Each engine runs in its own subprocess with the same threads
(peak RSS is the child's); `--warmup` steps are not timed.

Measured per timed step: wall time; rollout time (gemmaforge: the engine's `rollout/s` from
metrics.jsonl; TRL: the time inside `generate`, wrapped) and the tokens generated (each reply up
to and including its stop token); optimisation time = step − rollout (reference log-probs,
rewards, forward, backward, optimiser). Rollout tokens/s = generated tokens / rollout time;
optimisation tokens/s = the same completion tokens / optimisation time.

    python benchmarks/bench_rl.py [--steps 3] [--warmup 1] [--prompts 4] [--k 4] [--new 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from side_by_side import load_note

sys.path.insert(0, str(Path(__file__).parent))
from rl_demo import questions  # noqa: E402

# two-term additions/subtractions of 1-2 digits, asked in a chat turn (the setting of the measured results)
TASK = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"],
        "allow_parentheses": False, "allow_negation": False}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
RANK, ALPHA, LR, BETA = 16, 32.0, 5e-4, 0.05


def reward(prompt: str, response: str, entry: dict | None = None, dataset: str = "", **_) -> float:
    """The reward both trainers call: reasoning-gym's checker on the reply."""
    from gemmaforge.train.rewards import reasoning_gym_score

    return reasoning_gym_score(prompt, response, entry=entry, dataset=dataset)


def gemmaforge_run(args) -> list[dict]:
    from gemmaforge.train.config import TrainConfig
    from gemmaforge.train.rl import rlhf

    config = TrainConfig.from_dict({
        "out_dir": str(args.work / "gf"), "model": {"init_from": "gemma3-270m"},
        "lora": {"targets": TARGETS, "rank": RANK, "alpha": ALPHA, "dropout": 0.0},
        "optim": {"lr": LR, "warmup_steps": 0, "min_lr_ratio": 1.0, "weight_decay": 0.0},
        "train": {"max_steps": args.warmup + args.steps, "global_batch": args.prompts * args.k,
                  "micro_batch": args.prompts * args.k, "device": "cpu"},
        "checkpoint": {"interval": 1000, "keep": 1}, "log": {"interval": 1, "progress": False},
        "rl": {"algorithm": "rloo", "prompts": str(args.work / "prompts.jsonl"), "held_out": 0, "k": args.k,
               "prompts_per_step": args.prompts, "max_new_tokens": args.new, "temperature": 1.0,
               "kl_coef": BETA, "rewards": [{"kind": "function", "target": f"{__file__}:reward"}]}})
    rlhf(config)
    rows = [json.loads(line) for line in (args.work / "gf" / "metrics.jsonl").read_text().splitlines()]
    return [{"step_s": r["step_s"], "rollout_s": r["rollout/s"], "tokens": r["rollout/tok_s"] * r["rollout/s"]}
            for r in rows if "rollout/s" in r]


def trl_run(args) -> list[dict]:
    import datasets
    import peft
    import torch
    import transformers
    import trl

    tok = transformers.AutoTokenizer.from_pretrained(args.work / "hf")
    stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_turn>")]
    spent: list[tuple[float, int]] = []
    generate = transformers.GenerationMixin.generate

    def timed(self, *a, **k):
        t0 = time.perf_counter()
        out = generate(self, *a, **k)
        width = (k.get("input_ids") if k.get("input_ids") is not None else a[0]).shape[1]
        done = torch.isin(out[:, width:], torch.tensor(stops))
        n = torch.where(done.any(1), done.int().argmax(1) + 1, torch.full_like(done[:, 0], out.shape[1] - width,
                                                                                dtype=torch.long))
        spent.append((time.perf_counter() - t0, int(n.sum())))
        return out

    transformers.GenerationMixin.generate = timed
    steps, started = [], []

    class Timer(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            started.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            seconds, tokens = spent[-1]
            steps.append({"step_s": time.perf_counter() - started[-1], "rollout_s": seconds, "tokens": tokens})

    rows = json.loads((args.work / "trl_prompts.json").read_text())

    def trl_reward(prompts, completions, entry_json, **_):
        return [reward(p, c, entry=json.loads(e), dataset="basic_arithmetic")
                for p, c, e in zip(prompts, completions, entry_json)]

    model = transformers.AutoModelForCausalLM.from_pretrained(args.work / "hf", dtype=torch.float32)
    config = trl.RLOOConfig(output_dir=str(args.work / "trl"), per_device_train_batch_size=args.prompts * args.k,
                            num_generations=args.k, max_completion_length=args.new, temperature=1.0, top_k=0,
                            top_p=1.0, beta=BETA, learning_rate=LR, lr_scheduler_type="constant", weight_decay=0.0,
                            max_steps=args.warmup + args.steps, logging_steps=1, use_cpu=True, report_to=[],
                            save_strategy="no", disable_dropout=True, dataloader_num_workers=0,
                            generation_kwargs={"eos_token_id": stops})
    lora = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    trainer = trl.RLOOTrainer(model=model, reward_funcs=trl_reward, args=config,
                              train_dataset=datasets.Dataset.from_list(rows), processing_class=tok, peft_config=lora,
                              callbacks=[Timer()])
    trainer.train()
    return steps


def child(engine: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    steps = (gemmaforge_run if engine == "gemmaforge" else trl_run)(args)[args.warmup:]
    step_s, rollout_s = sum(s["step_s"] for s in steps), sum(s["rollout_s"] for s in steps)
    tokens = sum(s["tokens"] for s in steps)
    return {"steps": steps, "step_s": step_s / len(steps), "rollout_tok_s": tokens / rollout_s,
            "optim_tok_s": tokens / (step_s - rollout_s), "rollout_share": rollout_s / step_s,
            "tokens_per_step": tokens / len(steps),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def write_prompts(args) -> None:
    """The same prompts for both: gemmaforge reads the JSONL; TRL gets the chat-rendered text (its
    tokenizer adds the <bos> that gemmaforge's rendering starts with)."""
    import gemmaforge as gf

    tok = gf.load_tokenizer("gemma3-270m")
    entries = questions(args.prompts * (args.warmup + args.steps) * 4, 0, TASK)
    rows = [{"prompt": f"{e['question']}\nGive only the final answer.", "entry": e, "dataset": "basic_arithmetic"}
            for e in entries]
    (args.work / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rendered = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}]) for r in rows]
    assert all(r.startswith("<bos>") for r in rendered)
    (args.work / "trl_prompts.json").write_text(json.dumps(
        [{"prompt": r[len("<bos>"):], "entry_json": json.dumps(e)} for r, e in zip(rendered, entries)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=4, help="prompts a step")
    ap.add_argument("--k", type=int, default=4, help="samples a prompt")
    ap.add_argument("--new", type=int, default=32, help="max new tokens a reply")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_rl"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        print(json.dumps(child(args.engine, args)))
        return
    import gemmaforge as gf
    from gemmaforge.util.machine import cpu_name

    args.work.mkdir(parents=True, exist_ok=True)
    write_prompts(args)
    if not (args.work / "hf" / "config.json").exists():
        gf.export_hf(gf.load_model("gemma3-270m"), args.work / "hf", tokenizer=gf.load_tokenizer("gemma3-270m"),
                     overwrite=True)
    load = os.getloadavg()
    results = {}
    for engine in ("trl", "gemmaforge"):
        out = subprocess.run([sys.executable, __file__, "--engine", engine, *sys.argv[1:]], capture_output=True,
                             text=True)
        if out.returncode:
            sys.exit(f"{engine} failed:\n{out.stderr[-4000:]}")
        results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
        print(engine, results[engine], file=sys.stderr)
    import peft
    import torch
    import transformers
    import trl

    g, t = results["gemmaforge"], results["trl"]
    ratios = {"rollout_tok_s": g["rollout_tok_s"] / t["rollout_tok_s"],
              "optim_tok_s": g["optim_tok_s"] / t["optim_tok_s"],
              "step_speed": t["step_s"] / g["step_s"], "memory": g["peak_rss_mb"] / t["peak_rss_mb"]}
    goals = {"rollout_3x": ratios["rollout_tok_s"] >= 3, "step_2x": ratios["step_speed"] >= 2,
             "memory_le": ratios["memory"] <= 1}
    report = {"results": results, "ratios": ratios, "goals": goals,
              "settings": {k: getattr(args, k) for k in ("steps", "warmup", "prompts", "k", "new", "threads")},
              "env": {"cpu": cpu_name(), "threads": args.threads, "python": platform.python_version(),
                      "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                      "peft": peft.__version__, "load_before": load, "load_after": os.getloadavg()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_rl.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "bench_rl.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    g, t, x, s, e = r["results"]["gemmaforge"], r["results"]["trl"], r["ratios"], r["settings"], r["env"]
    mark = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return (
        "# RLOO step: gemmaforge rlhf vs TRL RLOOTrainer + peft (gemma3-270m, float32, CPU)\n\n"
        f"`python benchmarks/bench_rl.py` — {s['prompts']} prompts x k = {s['k']} replies of up to {s['new']} tokens "
        f"at T = 1, LoRA r{RANK} on {', '.join(TARGETS)}, KL coefficient {BETA}, one pass, {s['steps']} timed steps "
        f"after {s['warmup']} warm-up, {s['threads']} thread(s), each engine in its own subprocess.\n\n"
        "| | TRL | gemmaforge | ratio |\n|---|---|---|---|\n"
        f"| rollout tokens/s | {t['rollout_tok_s']:.1f} | {g['rollout_tok_s']:.1f} | {x['rollout_tok_s']:.2f}x |\n"
        f"| optimisation tokens/s | {t['optim_tok_s']:.1f} | {g['optim_tok_s']:.1f} | {x['optim_tok_s']:.2f}x |\n"
        f"| wall time per step (s) | {t['step_s']:.2f} | {g['step_s']:.2f} | {x['step_speed']:.2f}x faster |\n"
        f"| share of the step in rollouts | {t['rollout_share']:.0%} | {g['rollout_share']:.0%} | |\n"
        f"| completion tokens per step | {t['tokens_per_step']:.0f} | {g['tokens_per_step']:.0f} | |\n"
        f"| peak RSS (MB) | {t['peak_rss_mb']:.0f} | {g['peak_rss_mb']:.0f} | {x['memory']:.2f}x |\n\n"
        f"Goals: rollout tokens/s >= 3x TRL's: {mark(r['goals']['rollout_3x'])}; step >= 2x faster: "
        f"{mark(r['goals']['step_2x'])}; memory <= TRL's: {mark(r['goals']['memory_le'])}.\n\n"
        "Rollout = sampling the replies (TRL: inside `generate`; gemmaforge: the KV-cache `Decoder`); optimisation "
        "= the rest of the step (reference log-probs with adapters off, rewards, forward, backward, AdamW). Both "
        "sample from the same weights at T = 1, so reply lengths differ between the runs: read tokens/s, and "
        "the tokens a step beside the step time.\n\n"
        f"{e['cpu']}, torch {e['torch']}, transformers {e['transformers']}, TRL {e['trl']}, peft {e['peft']}. "
        f"{load_note([e['load_before'][0], e['load_after'][0]], e['threads'])}\n")


if __name__ == "__main__":
    main()
